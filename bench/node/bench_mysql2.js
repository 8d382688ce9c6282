// bench_mysql2.js - bench_mysql's workload through mysql2, the pool a Node.js
// user would reach for: point selects by primary key,
// SELECT id, k, c FROM bench_points WHERE id = ?, ids from the same
// pseudo-random sequence over the same rows, each reply checked (one row,
// the id asked for). Two figures, one pool each:
//
//   mysql2_query_poolP    pool.query   (text protocol, the id escaped into the SQL)
//   mysql2_execute_poolP  pool.execute (prepared statements, cached per connection)
//
//     node bench/node/bench_mysql2.js      (bench/node/run.sh installs mysql2 first)
//
// Environment: DBPOOL_TEST_MYSQL_URL (required, mysql://user:pass@127.0.0.1:port/db;
// scripts/with-servers.sh sets it), BENCH_MYSQL_N (queries, 30000; 10000
// with BENCH_QUICK=1), BENCH_MYSQL_ROWS (100000, as bench_mysql),
// BENCH_NODE_POOL (connectionLimit, 8), BENCH_NODE_INFLIGHT (64),
// BENCH_MAX_SECONDS (per measured phase, 120).
//
// mysql2's callback API, not mysql2/promise: on this workload it measured
// clearly faster (2 cores, 5 alternating rounds of 30000, medians: query
// ~19700 q/s against ~11800, execute ~22900 against ~13400); the promise
// wrapper adds an allocation and a microtask per query.
//
// The table is bench_mysql's: it is not created here (that would copy its
// filler and fill code); when it is missing or has another row count this
// fails and says to run build/bench/bench_mysql first. Each pool is warmed
// up (every connection opened, statements prepared) before it is timed,
// with bench_mysql's warm-up count. Exit 1 on any failed or wrong reply.
'use strict';

const common = require('./common.js');

const PROG = 'bench_mysql2';
const TABLE = 'bench_points';
const SELECT_SQL = `SELECT id, k, c FROM ${TABLE} WHERE id = ?`;

let mysql;
try {
    mysql = require('mysql2');
} catch (e) {
    common.die(PROG, 'mysql2 is not installed: run bench/node/run.sh (it runs npm ci in bench/node)');
}
const MYSQL2_VERSION = require('mysql2/package.json').version;

function queryOnce(pool, sql) {
    return new Promise((resolve, reject) => pool.query(sql, (err, rows) => (err ? reject(err) : resolve(rows))));
}

// Rejects a table bench_mysql has not filled with `rows` rows, and reads it
// whole so the buffer pool is warm, as bench_mysql does.
async function checkTable(pool, rows) {
    const hint = `run build/bench/bench_mysql first (it creates and fills ${TABLE} with BENCH_MYSQL_ROWS rows)`;
    let r;
    try {
        r = await queryOnce(pool, `SELECT COUNT(*) AS n, COALESCE(MAX(id), 0) AS maxid FROM ${TABLE}`);
    } catch (e) {
        if (e.code === 'ER_NO_SUCH_TABLE') common.die(PROG, `no table ${TABLE}: ${hint}`);
        common.die(PROG, `checking ${TABLE}: ${e.message}`);
    }
    const have = Number(r[0].n), maxid = Number(r[0].maxid);
    if (have !== rows || maxid !== rows)
        common.die(PROG, `${TABLE} has ${have} rows (max id ${maxid}), not ${rows}: ${hint}`);
    await queryOnce(pool, `SELECT SUM(LENGTH(c)) AS s FROM ${TABLE}`);
}

function endPool(pool) {
    return new Promise((resolve) => pool.end(() => resolve()));
}

async function main() {
    const u = common.loopbackUrl(PROG, 'DBPOOL_TEST_MYSQL_URL', 'run under scripts/with-servers.sh');
    const n = common.envCount('BENCH_MYSQL_N', 30000, 10000);
    const rows = common.envLong('BENCH_MYSQL_ROWS', 100000);
    const poolSize = common.envLong('BENCH_NODE_POOL', 8);
    const inflight = common.envLong('BENCH_NODE_INFLIGHT', 64);
    const maxS = common.maxSeconds();
    const warm = common.warmCount(n, 500, 5000);
    const ids = common.drawIndexes(n, rows).map((x) => x + 1);
    const config = {
        host: u.host,
        port: u.port || 3306,
        user: u.user,
        password: u.password,
        database: u.path || undefined,
        charset: 'utf8mb4',
        connectionLimit: poolSize,
        maxIdle: poolSize,
        waitForConnections: true,
        queueLimit: 0,
        connectTimeout: 10000,
    };
    let failed = 0;

    for (const method of ['query', 'execute']) {
        const pool = mysql.createPool(config);
        if (method === 'query') {
            await checkTable(pool, rows);
            process.stderr.write(`${PROG}: ${n} point selects by primary key on ${rows} rows (${SELECT_SQL})\n`);
        }
        const submit = (i, done) => {
            const id = ids[i];
            pool[method](SELECT_SQL, [id], (err, res) => {
                if (err) done(err);
                else if (res.length !== 1 || res[0].id !== id)
                    done(new Error(`id ${id}: ${res.length} rows, first id ${res.length ? res[0].id : 'none'}`));
                else done(null);
            });
        };
        const w = await common.runWindow(PROG, `${method} warm-up`, warm, inflight, maxS, submit);
        if (w.errors) common.die(PROG, `the ${method} warm-up queries failed`);
        const r = await common.runWindow(PROG, method, n, inflight, maxS, submit);
        common.printRate(`mysql2_${method}_pool${poolSize}`, r, 'q/s',
            `mysql2 ${MYSQL2_VERSION} pool.${method}, ${inflight} in flight, node ${process.version}`);
        failed += r.errors;
        await endPool(pool);
    }
    if (failed) common.die(PROG, `${failed} queries failed or returned a wrong row`);
}

main().catch((e) => common.die(PROG, e && e.message ? e.message : String(e)));
