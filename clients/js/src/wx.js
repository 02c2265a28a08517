// WeChat mini-program support (`cardgw/wx`): a transport over wx.connectSocket and the app's
// lifecycle (background/foreground, network loss) mapped onto Client.suspend()/resume().
//
//   import { Client } from 'cardgw';
//   import { wxTransport, attachWxLifecycle } from 'cardgw/wx';
//   const client = new Client({ url: 'wss://gw.example.com/ws', token, transport: wxTransport(wx) });
//   attachWxLifecycle(client, wx);
//   client.connect();
//
// WeChat facts this follows: at most 5 sockets at once per mini-program (the client holds one,
// and closes it before opening the next; a close requested before the socket opened is carried
// out when it opens, so no socket lingers); SocketTask cannot send WebSocket pings (the client's
// app-level `ping` command is the heartbeat); only wss:// to domains on the mini-program's
// "socket legal domains" list (ws:// only in the developer tools with domain checks off); about
// 5 s after the app goes to the background WeChat cuts its sockets and reports onClose with code
// 1000 and reason "interrupted": that is a lost connection, not our close, so the client
// reconnects and resumes every subscription with `since`.

function frame(data) {
  if (typeof data === 'string' || data instanceof ArrayBuffer) return data;
  // SocketTask.send takes a string or an ArrayBuffer: hand a view over as exactly its bytes
  if (ArrayBuffer.isView(data)) {
    const { buffer, byteOffset, byteLength } = data;
    return byteOffset === 0 && byteLength === buffer.byteLength ? buffer : buffer.slice(byteOffset, byteOffset + byteLength);
  }
  return String(data);
}

/**
 * A transport for `new Client({transport})` over `wxApi.connectSocket` (pass the mini-program's
 * `wx`). `options` are passed on to connectSocket (`header`, `timeout`, `tcpNoDelay`,
 * `perMessageDeflate`, …); `url` and `protocols` come from the client.
 */
export function wxTransport(wxApi, options) {
  if (!wxApi || typeof wxApi.connectSocket !== 'function') throw new TypeError('cardgw/wx: pass the mini-program wx object');
  return function (url, protocols) {
    const s = { onopen: null, onmessage: null, onclose: null, onerror: null };
    let opened = false;
    let closeArgs = null; // close() before the socket opened: close it when it opens
    const error = (err) => s.onerror && s.onerror(err);
    const task = wxApi.connectSocket(
      Object.assign({}, options, {
        url,
        protocols,
        fail: error, // no socket (e.g. more than 5 open, a domain not on the list)
      })
    );
    if (!task) throw new Error('cardgw/wx: connectSocket returned no SocketTask (base library too old)');
    task.onOpen(() => {
      opened = true;
      if (closeArgs) return task.close(closeArgs);
      if (s.onopen) s.onopen();
    });
    task.onMessage((res) => s.onmessage && s.onmessage({ data: res.data })); // string or ArrayBuffer
    // passed on as is: 1000 "interrupted" (background) reconnects by the client's close policy
    task.onClose((res) => s.onclose && s.onclose({ code: res && res.code, reason: res && res.reason }));
    task.onError(error);
    s.send = (data) => task.send({ data: frame(data), fail: error });
    s.close = (code, reason) => {
      const args = { code: code || 1000, reason: reason || '' };
      if (opened) return task.close(args);
      closeArgs = args;
      // WeChat may refuse to close a socket still connecting: then onOpen closes it
      task.close(Object.assign({ fail() {} }, args));
    };
    s.task = task;
    return s;
  };
}

/**
 * Maps the mini-program's lifecycle onto `client` (returns a function that detaches it):
 *
 * * `wx.onAppHide`: nothing at once (the socket keeps working for about 5 s, enough for a quick
 *   switch to the chat); when WeChat then cuts it (1000 "interrupted"), the client does not try
 *   to reconnect in the background (`pauseWhenHidden`, default true: reconnecting there is cut
 *   again or fails) but holds (Client.suspend) until the app is shown.
 * * `wx.onAppShow`: Client.resume(): reconnect at once if disconnected (no backoff wait), or
 *   check a connection that looks alive with a ping; subscriptions resume with `since`.
 * * `wx.onNetworkStatusChange`: `isConnected: false` → Client.suspend() (close now, hold
 *   reconnecting); `true` → Client.resume() (reconnect at once; after a switch between Wi-Fi
 *   and cellular, a ping checks the connection).
 */
export function attachWxLifecycle(client, wxApi, options) {
  const pauseWhenHidden = !options || options.pauseWhenHidden !== false;
  let hidden = false;
  let online = true;
  const onHide = () => {
    hidden = true;
  };
  const onShow = () => {
    hidden = false;
    if (online) client.resume('app shown');
  };
  const onNetwork = (res) => {
    if (res && res.isConnected === false) {
      online = false;
      client.suspend('network lost');
    } else {
      online = true;
      if (!hidden || !pauseWhenHidden) client.resume('network back');
    }
  };
  // a connection lost while hidden (or offline): hold reconnecting until shown (or back online)
  const offDisconnected = client.on('disconnected', (ev) => {
    if (ev.reconnect && ((hidden && pauseWhenHidden) || !online)) client.suspend(online ? 'app hidden' : 'network lost');
  });
  wxApi.onAppHide(onHide);
  wxApi.onAppShow(onShow);
  if (wxApi.onNetworkStatusChange) wxApi.onNetworkStatusChange(onNetwork);
  return function detach() {
    offDisconnected();
    if (wxApi.offAppHide) wxApi.offAppHide(onHide);
    if (wxApi.offAppShow) wxApi.offAppShow(onShow);
    if (wxApi.offNetworkStatusChange) wxApi.offNetworkStatusChange(onNetwork);
  };
}
