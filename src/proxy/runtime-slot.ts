import type { ScanRuntime } from './context';

/**
 * The scan runtime in use (scanner, policy, bundle), swappable without dropping requests: a request takes the runtime
 * current when it starts and keeps it to the end (every instance of a response is scored by one bundle); a swap
 * makes the new one current at once and resolves when the last request holding the old one has finished.
 */
export class RuntimeSlot {
  #current: ScanRuntime;
  readonly #refs = new Map<ScanRuntime, number>();
  readonly #drained = new Map<ScanRuntime, () => void>();

  constructor(initial: ScanRuntime) {
    this.#current = initial;
  }

  get current(): ScanRuntime {
    return this.#current;
  }

  /** The current runtime, held until `release` is called (call it once). */
  acquire(): { runtime: ScanRuntime; release: () => void } {
    const runtime = this.#current;
    this.#refs.set(runtime, (this.#refs.get(runtime) ?? 0) + 1);
    let released = false;
    return {
      runtime,
      release: () => {
        if (released) return;
        released = true;
        const n = (this.#refs.get(runtime) ?? 1) - 1;
        if (n > 0) { this.#refs.set(runtime, n); return; }
        this.#refs.delete(runtime);
        this.#drained.get(runtime)?.();
      },
    };
  }

  /** Makes `next` current; resolves with the previous one once no request holds it any more. */
  swap(next: ScanRuntime): Promise<ScanRuntime> {
    const previous = this.#current;
    this.#current = next;
    if (!this.#refs.get(previous)) return Promise.resolve(previous);
    return new Promise((resolve) => {
      this.#drained.set(previous, () => { this.#drained.delete(previous); resolve(previous); });
    });
  }
}
