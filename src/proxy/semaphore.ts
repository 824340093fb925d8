/** A counting semaphore with a bounded FIFO queue and a per-waiter deadline. */
export class Semaphore {
  #active = 0;
  #queue: Array<{ grant: () => void; timer: NodeJS.Timeout | null }> = [];
  constructor(readonly limit: number) {}

  get active(): number { return this.#active; }
  get waiting(): number { return this.#queue.length; }

  /** Resolves with a release function; rejects with `timeout` after `timeoutMs` in the queue. */
  acquire(timeoutMs?: number): Promise<() => void> {
    const release = (): void => {
      this.#active--;
      const next = this.#queue.shift();
      if (next) next.grant();
    };
    if (this.#active < this.limit) {
      this.#active++;
      return Promise.resolve(once(release));
    }
    return new Promise((resolve, reject) => {
      const entry = {
        timer: null as NodeJS.Timeout | null,
        grant: () => {
          if (entry.timer) clearTimeout(entry.timer);
          this.#active++;
          resolve(once(release));
        },
      };
      if (timeoutMs !== undefined) {
        entry.timer = setTimeout(() => {
          const i = this.#queue.indexOf(entry);
          if (i >= 0) this.#queue.splice(i, 1);
          reject(new Error('timeout'));
        }, timeoutMs);
        entry.timer.unref();
      }
      this.#queue.push(entry);
    });
  }
}

function once(fn: () => void): () => void {
  let done = false;
  return () => { if (!done) { done = true; fn(); } };
}
