// server.js — Socket.IO 4.8 peer for the cardgw benchmarks: one instance of a two-instance
// cluster joined by @socket.io/redis-adapter; POST /publish?ch=<room> broadcasts the JSON body.
"use strict";
const http = require("http");
const { Server } = require("socket.io");
const { createAdapter } = require("@socket.io/redis-adapter");
const { createClient } = require("redis");

const port = Number(process.env.PORT || 3000);
const redisUrl = process.env.REDIS_URL || "redis://127.0.0.1:6379";

async function main() {
  const pubClient = createClient({ url: redisUrl });
  const subClient = pubClient.duplicate();
  await Promise.all([pubClient.connect(), subClient.connect()]);

  const server = http.createServer((req, res) => {
    if (req.method === "POST" && req.url.startsWith("/publish?ch=")) {
      const ch = decodeURIComponent(req.url.slice("/publish?ch=".length));
      const chunks = [];
      req.on("data", (c) => chunks.push(c));
      req.on("end", () => {
        let data;
        try {
          data = JSON.parse(Buffer.concat(chunks).toString());
        } catch (e) {
          res.writeHead(400, { "Content-Length": "0" }).end();
          return;
        }
        io.to(ch).emit("pub", data);
        res.writeHead(200, { "Content-Type": "application/json", "Content-Length": "11" });
        res.end('{"ok":true}');
      });
      return;
    }
    res.writeHead(404, { "Content-Length": "0" }).end();
  });
  // Production settings from the Socket.IO docs: WebSocket transport only (no polling, so no
  // sticky sessions needed), no per-message deflate, no client bundle served.
  const io = new Server(server, {
    transports: ["websocket"],
    serveClient: false,
    perMessageDeflate: false,
    httpCompression: false,
    adapter: createAdapter(pubClient, subClient),
  });
  io.on("connection", (socket) => {
    const a = socket.handshake.auth || {};
    const rooms = [];
    if (a.uid) rooms.push("user:" + a.uid);
    if (a.g) rooms.push("group:" + a.g);
    socket.join(rooms);
  });
  server.listen(port, "127.0.0.1");
  const stop = () => {
    io.close();
    pubClient.quit().catch(() => {});
    subClient.quit().catch(() => {});
    setTimeout(() => process.exit(0), 500).unref();
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
