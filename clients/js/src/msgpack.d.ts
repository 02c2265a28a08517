import type { Codec } from './index.js';

/** The cardgw.v1.msgpack codec (binary frames), built on @msgpack/msgpack. */
export const msgpackCodec: Codec;
