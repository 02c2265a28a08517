// cardgw client: `import { Client } from 'cardgw'` (JSON); msgpack: `import { msgpackCodec }
// from 'cardgw/msgpack'` and pass it as options.codec. See README.md.
export {
  Client,
  CardgwError,
  closePolicy,
  EVENTS,
  DISCONNECTED,
  CONNECTING,
  CONNECTED,
  CLOSE_CONNECT_TIMEOUT,
  CLOSE_DEAD,
  CLOSE_BAD_FRAME,
  CLOSE_SUSPENDED,
} from './client.js';
export { Subscription, UNSUBSCRIBED, SUBSCRIBING, SUBSCRIBED } from './subscription.js';
export { jsonCodec } from './json.js';
export { DEFAULT_PRIORITY } from './hooks.js';
