/**
 * A counting semaphore with an optional weight budget, a bounded FIFO queue and a per-waiter deadline.
 * A waiter is admitted when fewer than `limit` holders are active and, unless nothing is active at all, its
 * weight fits in what is left of `weightLimit` (so one oversized holder still runs, alone). The queue is
 * strictly FIFO: a heavy waiter at the head is not overtaken by lighter ones behind it.
 */
export class Semaphore {
  #active = 0;
  #weight = 0;
  #queue: Array<{ weight: number; grant: () => void; timer: NodeJS.Timeout | null }> = [];
  constructor(readonly limit: number, readonly weightLimit = Number.POSITIVE_INFINITY) {}

  get active(): number { return this.#active; }
  get waiting(): number { return this.#queue.length; }
  /** Sum of the weights of the active holders. */
  get weight(): number { return this.#weight; }

  #fits(weight: number): boolean {
    return this.#active < this.limit && (this.#active === 0 || this.#weight + weight <= this.weightLimit);
  }

  /** Resolves with a release function; rejects with `timeout` after `timeoutMs` in the queue. */
  acquire(timeoutMs?: number, weight = 0): Promise<() => void> {
    const take = (): (() => void) => {
      this.#active++;
      this.#weight += weight;
      return once(() => {
        this.#active--;
        this.#weight -= weight;
        this.#drain();
      });
    };
    if (this.#queue.length === 0 && this.#fits(weight)) return Promise.resolve(take());
    return new Promise((resolve, reject) => {
      const entry = {
        weight,
        timer: null as NodeJS.Timeout | null,
        grant: () => {
          if (entry.timer) clearTimeout(entry.timer);
          resolve(take());
        },
      };
      if (timeoutMs !== undefined) {
        entry.timer = setTimeout(() => {
          const i = this.#queue.indexOf(entry);
          if (i >= 0) this.#queue.splice(i, 1);
          reject(new Error('timeout'));
          this.#drain(); // a heavy head that timed out may have been holding lighter waiters back
        }, timeoutMs);
        entry.timer.unref();
      }
      this.#queue.push(entry);
    });
  }

  #drain(): void {
    while (this.#queue.length > 0 && this.#fits(this.#queue[0].weight)) this.#queue.shift()!.grant();
  }
}

function once(fn: () => void): () => void {
  let done = false;
  return () => { if (!done) { done = true; fn(); } };
}
