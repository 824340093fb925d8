import dcmjs from 'dcmjs';

/**
 * dcmjs trusts declared lengths: when an element, item or fragment claims more bytes than the data holds, its
 * buffer view (SplitDataView.slice) allocates the claimed length, zero-filled, and the value reader then walks all
 * of it (found by `npm run fuzz`: a 1.4 KB file whose one element declares 6 MB took 3 s of main-thread CPU in the
 * header reader and again in the decoder; 4 GB lengths exhaust memory; even pydicom's rtdose_rle.dcm made dcmjs
 * allocate 775 MB for one misread item). Every dcmjs read of a value goes through that one method, so it is bounded
 * here, once for the process: a slice that runs past the end of the data returns the bytes that are there. The
 * stream's offset still moves by the declared length, so a dataset that ends early is still reported truncated;
 * only the zero-filled padding (and the time spent reading it) is gone.
 */
interface SplitDataViewLike {
  /** Bytes added to a read view. */
  size: number;
  /** Bytes held: equals `size` when reading; when writing, the buffers grown for the output (`size` stays 0). */
  byteLength: number;
  slice(start?: number, end?: number): ArrayBuffer;
}

const BOUNDED = Symbol.for('warden.dcmjs.boundedSlice');

function boundReads(): void {
  const probe = new dcmjs.data.ReadBufferStream(new ArrayBuffer(0));
  const proto = Object.getPrototypeOf((probe as unknown as { view: SplitDataViewLike }).view) as SplitDataViewLike & { [BOUNDED]?: true };
  if (typeof proto?.slice !== 'function') throw new Error('dcmjs changed: its buffer view has no slice(); re-check src/dicom/dcmjs-bounds.ts');
  if (proto[BOUNDED]) return;
  const slice = proto.slice;
  // Bounded by the bytes the view holds: the data when reading; when writing (dcmjs's write(), used by tools and
  // tests) the grown output buffers, which `size` does not count.
  proto.slice = function boundedSlice(this: SplitDataViewLike, start = 0, end = this.size): ArrayBuffer {
    const held = Math.max(this.size, this.byteLength);
    return slice.call(this, start, end > held ? Math.max(start, held) : end);
  };
  proto[BOUNDED] = true;
}

boundReads();

/**
 * The element budget of the dcmjs read in progress (dcmjs reads synchronously, nested datasets included, so one
 * process-wide counter serves): withElementBudget(n, read) lets `read` parse at most n elements, then throws.
 */
const budget = { limit: Number.POSITIVE_INFINITY, left: Number.POSITIVE_INFINITY };

export class TooManyElementsError extends RangeError {
  constructor(readonly limit: number) {
    super(`more than ${limit} elements`);
    this.name = 'TooManyElementsError';
  }
}

export function withElementBudget<T>(limit: number, read: () => T): T {
  const outer = { ...budget };
  budget.limit = limit;
  budget.left = limit;
  try {
    return read();
  } finally {
    Object.assign(budget, outer);
  }
}

function countElements(): void {
  const message = (dcmjs as unknown as { data: { DicomMessage: Record<string | symbol, unknown> } }).data.DicomMessage;
  const readTag = message._readTag;
  if (typeof readTag !== 'function') throw new Error('dcmjs changed: DicomMessage._readTag is gone; re-check src/dicom/dcmjs-bounds.ts');
  if (message[BOUNDED]) return;
  message._readTag = function countedReadTag(this: unknown, ...args: unknown[]): unknown {
    if (--budget.left < 0) throw new TooManyElementsError(budget.limit);
    return (readTag as (...a: unknown[]) => unknown).apply(this, args);
  };
  message[BOUNDED] = true;
}

countElements();
