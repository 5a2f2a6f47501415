const cluster = require('cluster');
const http = require('http');
// 决定应该启动多少个进程
const cpuNum = require('os').cpus().length;

if (cluster.isMaster) {
    for (let i = 0; i < cpuNum; i++) {
        cluster.fork();
    }
    // 监听worker退出事件
    cluster.on('exit', (worker) => {
        console.log(`worker${worker.id} exit`);
    });
    // 监听创建worker进程事件
    cluster.on('fork', (worker) => {
        console.log(`fork:worker${worker.id}`)
    });
    // 监听master向worker状态事件
    cluster.on('listening', (worker, addr) => {
       console.log(`worker${worker.id} listening on ${addr.address}:${addr.port}`);
    });
    // 监听指定的worker创建成功事件
    cluster.on('online', (worker) => {
        console.log(`worker ${worker.id} is online`)
    });
    Object.keys(cluster.workers).forEach(function (id) {
        cluster.workers[id].on('message', function (msg) {
            console.log('[master] ' + 'message ' + msg);
        });
    });
} else {
    process.on('message', function (msg) {
        console.log('[worker] ' + msg);
        process.send('[worker] worker'+cluster.worker.id+' received!')
    })
    http.createServer((req, res) => {
        console.log(cluster.worker.id);
        res.writeHead(200);
        res.end('hello world');
    }).listen(3000, '127.0.0.1');
}
