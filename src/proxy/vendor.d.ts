/** The Dicer bundled in @fastify/busboy 3.2.6 (internal path, version pinned in package.json). */
declare module '@fastify/busboy/deps/dicer/lib/Dicer.js' {
  import { Readable, Writable, WritableOptions } from 'node:stream';
  interface DicerConfig extends WritableOptions {
    boundary?: string;
    headerFirst?: boolean;
    partHwm?: number;
    maxHeaderPairs?: number;
    maxHeaderSize?: number;
  }
  class Dicer extends Writable {
    constructor(config: DicerConfig);
    setBoundary(boundary: string): void;
  }
  export = Dicer;
}
