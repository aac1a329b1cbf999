// The reference side of tests/daemon/http1_differential_test.cc: Node's built-in http server, whose
// parser is llhttp, with its defaults (no insecureHTTPParser, Host required). Every request it
// parses is answered 200 with what it saw, so the test can compare where each request ended:
//   {"m": method, "u": target, "b": body in base64}
// A request llhttp refuses is answered 400 with llhttp's error code as the body.
'use strict';
const http = require('http');

const port = Number(process.argv[2]);
const server = http.createServer({ requireHostHeader: true }, (req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const payload = JSON.stringify({
      m: req.method,
      u: req.url,
      b: Buffer.concat(chunks).toString('base64'),
    });
    res.writeHead(200, {
      'Content-Type': 'application/json',
      'Content-Length': Buffer.byteLength(payload),
    });
    res.end(payload);
  });
});
// Node's own handler destroys the socket at once, before the answer to a request parsed just
// before the error (same read) is written: answer after those instead, naming llhttp's error.
server.on('clientError', (err, socket) => {
  setImmediate(() => {
    if (!socket.writable) return socket.destroy();
    const body = String(err.code);
    socket.end(`HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
  });
});
server.keepAliveTimeout = 5000;
// Port 0: the kernel picks one; the test reads it from this line.
server.listen(port, '127.0.0.1', () => {
  console.log(`llhttp_echo: listening on 127.0.0.1:${server.address().port}`);
});
