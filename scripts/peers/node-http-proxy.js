// The seed's node-http-proxy program: round-robin over the targets, one proxy per
// target, errors logged with the target's index. A single process, as in the seed.
//
// Differences from the original: the port comes from $PORT and the targets from argv
// (the benchmark script picks free ports), an error answers 502 instead of leaving the
// request hanging, and SIGTERM exits.
//
// Usage: PORT=9000 node node-http-proxy.js http://127.0.0.1:3000 http://127.0.0.1:3001 ...
'use strict';

const http = require('http');
const httpProxy = require('http-proxy');

const PORT = Number(process.env.PORT);
const targets = process.argv.slice(2).map((target) => ({ target }));
if (!Number.isInteger(PORT) || PORT <= 0 || targets.length === 0) {
  console.error('usage: PORT=N node node-http-proxy.js URL [URL...]');
  process.exit(2);
}

const proxies = targets.map(function (options, i) {
  const proxy = new httpProxy.createProxyServer(options);
  proxy.on('error', function (err, req, res) {
    console.error('Proxy error:', err);
    console.error('Server:', i);
    if (res && !res.headersSent) {
      res.writeHead(502);
      res.end();
    }
  });
  return proxy;
});

let i = 0;
http
  .createServer(function (req, res) {
    proxies[i].web(req, res);
    i = (i + 1) % proxies.length;
  })
  .listen(PORT, '127.0.0.1');

process.on('SIGTERM', () => process.exit(0));
