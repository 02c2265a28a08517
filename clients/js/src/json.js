// The JSON codec (subprotocol cardgw.v1.json, text frames). Binary data arrives as
// {"$bin": "<base64>"} (PROTOCOL.md section 7) and is left as that object.

let td;
function text(data) {
  if (typeof data === 'string') return data;
  // a transport that hands text frames over as bytes (Buffer, ArrayBuffer, typed array)
  td = td || new TextDecoder();
  return td.decode(data instanceof ArrayBuffer ? new Uint8Array(data) : data);
}

export const jsonCodec = {
  name: 'cardgw.v1.json',
  binary: false,
  encode: (msg) => JSON.stringify(msg),
  decode: (data) => JSON.parse(text(data)),
};
