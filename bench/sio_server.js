// The Socket.IO 4 baseline for bench/chatload: the room broadcast of a
// typical Socket.IO chat app, one Node process, no cluster, no adapter.
//
//     node bench/sio_server.js [PORT]      (or PORT=... in the environment)
//
// Clients send 42["join","room"] to enter a room and
// 42["message",{"room":"r",...}] to broadcast to everyone in it, the
// sender included.  Nothing is stored.  A join may ask for an ack
// (421["join","room"] -> 431[]): the load generator waits for it, so that
// no broadcast starts before every client is in the room.

"use strict";

const http = require("http");
const { Server } = require("socket.io");

const port = parseInt(process.argv[2] || process.env.PORT || "3000", 10);

const httpServer = http.createServer((req, res) => {
    res.writeHead(404);
    res.end();
});

// Defaults otherwise (pingInterval 25 s, pingTimeout 20 s): the benchmark
// measures Socket.IO as an application would run it.  perMessageDeflate is
// already off by default in engine.io 6.
const io = new Server(httpServer, {
    serveClient: false,
    transports: ["websocket", "polling"],
});

io.on("connection", (socket) => {
    socket.on("join", (room, ack) => {
        if (typeof room === "string") {
            socket.join(room);
        }
        if (typeof ack === "function") {
            ack();
        }
    });

    socket.on("message", (m) => {
        if (m !== null && typeof m === "object" && typeof m.room === "string") {
            io.to(m.room).emit("message", m);
        }
    });
});

// many connections arrive at once: a long accept queue
httpServer.listen({ port: port, host: "127.0.0.1", backlog: 4096 }, () => {
    console.error(`sio_server: 127.0.0.1:${port}, pid ${process.pid}`);
});

for (const sig of ["SIGINT", "SIGTERM"]) {
    process.on(sig, () => {
        io.close();
        process.exit(0);
    });
}
