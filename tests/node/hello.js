// The benchmark's Node program: hello world, no per-request log, the same under Node's own
// primary and under herd. PORT (default 0) and HOST (default 127.0.0.1).
const http = require('http');

const port = Number(process.env.PORT || 0);
const host = process.env.HOST || '127.0.0.1';

http.createServer((req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/plain' });
    res.end('hello world');
}).listen(port, host);
