// The msgpack codec (subprotocol cardgw.v1.msgpack, binary frames), a separate entry
// (`cardgw/msgpack`) so that a JSON-only build does not include @msgpack/msgpack:
//
//   import { Client } from 'cardgw';
//   import { msgpackCodec } from 'cardgw/msgpack';
//   new Client({ url, token, codec: msgpackCodec });
import { encode, decode } from '@msgpack/msgpack';

function bytes(data) {
  if (data instanceof Uint8Array) return data; // Node's Buffer is one too
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  throw new TypeError('cardgw.v1.msgpack: expected a binary frame, got ' + typeof data);
}

export const msgpackCodec = {
  name: 'cardgw.v1.msgpack',
  binary: true,
  encode: (msg) => encode(msg, { ignoreUndefined: true }),
  decode: (data) => decode(bytes(data)),
};
