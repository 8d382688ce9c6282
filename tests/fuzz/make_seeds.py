#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (tests/fuzz/corpus/<target>/).

The seeds are committed; this script only documents what each one is and
regenerates them: python3 tests/fuzz/make_seeds.py
"""
import hashlib
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- fuzz_url: every scheme, every option, the awkward spellings ----------
URLS = {
    "mysql-full": "mysql://user:p%40ss@127.0.0.1:3306/app?max=8&connect_timeout=5&charset=utf8mb4&ssl-mode=REQUIRED",
    "mysql-socket": "mysql://user@localhost/app?socket=/run/mysqld/mysqld.sock",
    "mariadb-ipv6-all-options": "mariadb://root:root%3Apw%401@[::1]:3307/db?min=2&max=4&max_waiting=100"
    "&acquire_timeout=0.5&query_timeout=250ms&idle_timeout=60&max_lifetime=1800&validate_after=1s"
    "&keepalive=30&backoff_min=0.1&backoff_max=5&slow_threshold=2&close_timeout=30&name=migrate"
    "&init=SET%20time_zone%3D%27%2B00%3A00%27&init=SET%20NAMES%20utf8mb4",
    "mysql-tls": "mysql://u:pw@db.example.com/db?ssl-mode=VERIFY_IDENTITY&ssl-ca=/etc/ca.pem"
    "&ssl-cert=/etc/c.pem&ssl-key=/etc/k.pem",
    "mysql-tls-no-ca": "mysql://u:pw@h/db?ssl_mode=verify_ca",
    "mysql-unencoded-password": "mysql://app:p@ss/w:rd@10.0.0.1:3306/app",
    "mysql-test-url": "mysql://dbpool:p%40ss%3Aw0rd%201@127.0.0.1:23306/dbpool_test",
    "mysql-min-over-max": "mysql://u:secret@h/db?min=5&max=2",
    "mysql-bad-option": "mysql://u:secret@h/db?max=abc&unknown=1",
    "mysql-bad-port": "mysql://u:secret@h:99999/db",
    "redis-db": "redis://:password@127.0.0.1:6379/2",
    "redis-acl": "redis://user:password@127.0.0.1:6379/0?max_blocking=2&pipeline=100&name=worker",
    "redis-test-url": "redis://:r3d%3As%40pw@127.0.0.1:26379/0",
    "redis-user-no-password": "redis://user@h/0",
    "redis-bad-db": "redis://:secret@h/x",
    "redis-mysql-option": "redis://:secret@h/0?charset=utf8",
    "cluster": "redis-cluster://:password@127.0.0.1:7001,127.0.0.1:7002/?read_from=replica&max_redirects=5",
    "cluster-acl-ipv6": "redis-cluster://dbpool:acl%3Ap%40ss@[::1]:7001,[::1]:7002,node3:7003/?read_from=prefer_replica",
    "cluster-db1": "redis-cluster://:pw@h1,h2/1",
    "rediss": "rediss://:secret@h:6380/0",
    "unknown-scheme": "postgres://u:secret@h/db",
    "no-scheme": "user:secret@host/db",
    "query-at-sign": "mysql://u:secret@h/db?name=a@b",
    "percent-bad": "mysql://u:se%zzcret@h/db",
    "empty-host-list": "redis-cluster://:pw@h1,,h2/",
}

# ---- fuzz_bind: 2-byte SQL length, SQL, typed parameters -------------------
NULL, BOOL, INT, UINT, DOUBLE, TEXT, BLOB = range(7)


def p_null():
    return bytes([NULL])


def p_bool(b):
    return bytes([BOOL, b])


def p_int(i):
    return bytes([INT]) + struct.pack("<q", i)


def p_uint(u):
    return bytes([UINT]) + struct.pack("<Q", u)


def p_double(d):
    return bytes([DOUBLE]) + struct.pack("<d", d)


def p_text(s):
    b = s if isinstance(s, bytes) else s.encode()
    return bytes([TEXT, len(b)]) + b


def p_blob(b):
    return bytes([BLOB, len(b)]) + b


def bind(sql, *params):
    s = sql if isinstance(sql, bytes) else sql.encode()
    return struct.pack("<H", len(s)) + s + b"".join(params)


BINDS = {
    "select-two": bind("SELECT id, name FROM users WHERE id > ? AND name = ?", p_int(10), p_text("O'Brien\\")),
    "insert-every-type": bind("INSERT INTO t (a, b, c, d, e, f, g) VALUES (?, ?, ?, ?, ?, ?, ?)",
                              p_null(), p_bool(1), p_int(-9223372036854775808), p_uint(18446744073709551615),
                              p_double(0.1), p_text(b"a\x00b\r\nc'\"\\\x1a"), p_blob(bytes(range(0, 256, 7)))),
    "quotes-comments": bind("SELECT '?', \"?\", `?`, ? -- ?\n# ?\n/* ? */ ?", p_int(1), p_text("x")),
    "doubled-quotes": bind("SELECT 'it''s ?', 'a\\'?', \"q\"\"?\", ?", p_text("?")),
    "multi-statement": bind("UPDATE t SET v = ? WHERE k = ?;SELECT ?", p_double(-1.5e300), p_text("k"), p_bool(0)),
    "dash-not-comment": bind("SELECT ?--?\n, 5--? ", p_int(-5), p_int(-6), p_int(7)),
    "unterminated-comment": bind("SELECT ? /* ?", p_text("*/")),
    "unterminated-literal": bind("SELECT ?, 'abc ?", p_text("'")),
    "adjacent-literal": bind("SELECT ?''?", p_text("a"), p_text("b")),
    "utf8": bind("SELECT ? AS 'ñ?', ? AS `é?`", p_text("日本語 ' \\ ?"), p_text("ü")),
    "backtick-backslash": bind("SELECT `a\\`, ?", p_text("x")),
    "many": bind("VALUES " + ",".join(["(?,?)"] * 20), *([p_int(i) for i in range(40)])),
    "nul-in-sql": bind(b"SELECT ?\x00, '\x00?' , ?", p_text("a"), p_text("b")),
    "double-edge": bind("SELECT ?, ?, ?, ?", p_double(5e-324), p_double(1.7976931348623157e308),
                        p_double(-0.0), p_double(123456789012345678.0)),
}

# ---- fuzz_reply: mode byte, then 4 chunk-seed bytes and a RESP stream ------
INFO = b"# Server\r\nredis_version:7.0.15\r\nredis_mode:standalone\r\nos:Linux\r\n"
REPLIES = {
    "status": b"+OK\r\n",
    "error": b"-ERR unknown command 'FOO', with args beginning with: \r\n",
    "integers": b":42\r\n:-9223372036854775808\r\n:9223372036854775807\r\n:0\r\n",
    "bulk": b"$5\r\nhello\r\n$0\r\n\r\n$-1\r\n",
    "bulk-binary": b"$8\r\na\x00b\r\nc\r\n\xff\r\n",
    "arrays": b"*-1\r\n*0\r\n*3\r\n$3\r\nfoo\r\n:1\r\n*2\r\n$-1\r\n+OK\r\n",
    "nested-deepest": b"*1\r\n" * 7 + b"*2\r\n:1\r\n$1\r\nx\r\n",
    "nested-too-deep": b"*1\r\n" * 9 + b":1\r\n",
    "error-in-array": b"*3\r\n+QUEUED\r\n-WRONGTYPE Operation against a key holding the wrong kind of value\r\n:7\r\n",
    "cluster-slots": b"*2\r\n*4\r\n:0\r\n:5460\r\n*3\r\n$9\r\n127.0.0.1\r\n:7001\r\n$40\r\n"
    + b"a" * 40 + b"\r\n*3\r\n$9\r\n127.0.0.1\r\n:7004\r\n$40\r\n" + b"b" * 40 + b"\r\n"
    b"*3\r\n:5461\r\n:10922\r\n*3\r\n$9\r\n127.0.0.1\r\n:7002\r\n$40\r\n" + b"c" * 40 + b"\r\n",
    "info": b"$%d\r\n%s\r\n" % (len(INFO), INFO),
    "pipeline": b"+OK\r\n" * 5 + b":1\r\n$3\r\nbar\r\n*2\r\n$1\r\na\r\n$1\r\nb\r\n-ERR x\r\n",
    "config-get": b"*2\r\n$7\r\ntimeout\r\n$1\r\n0\r\n*2\r\n$10\r\nmaxclients\r\n$5\r\n10000\r\n",
    "pubsub": b"*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$5\r\nhello\r\n",
    "bad-type": b"+OK\r\n@foo\r\n",
    "bad-length": b"$abc\r\nxyz\r\n",
    "truncated": b"*3\r\n$3\r\nfoo\r\n$10\r\nbar",
    "crlf-missing": b"$3\r\nfooXY:1\r\n",
}

COMMANDS = {
    "set": [b"SET", b"key", b"value"],
    "binary": [b"HSET", b"h\x00k", b"f\r\n", b"v$*\r\n\x00\xff"],
    "empty-arg": [b"SET", b"", b""],
    "ping": [b"PING"],
    "none": [],
    "many": [b"DEL"] + [b"k%d" % i for i in range(30)],
}

# ---- fuzz_slot: keys and hash tags from the cluster spec --------------------
KEYS = ["foo", "{user1000}.following", "{user1000}.followers", "foo{}{bar}", "foo{{bar}}zap",
        "foo{bar}{zap}", "{}", "{", "}", "}{", "{a", "a}", "123456789", "user:{42}:profile"]


def main():
    for name, url in URLS.items():
        write("fuzz_url", name, url.encode())
    for name, data in BINDS.items():
        write("fuzz_bind", name, data)
    for name, stream in REPLIES.items():
        write("fuzz_reply", "reply-" + name, b"\x00" + struct.pack("<I", 0x9E3779B9) + stream)
    for name, argv in COMMANDS.items():
        body = bytes([len(argv)]) + b"".join(bytes([len(a)]) + a for a in argv)
        write("fuzz_reply", "command-" + name, b"\x01" + body)
    for key in KEYS:
        write("fuzz_slot", "key-" + hashlib.sha1(key.encode()).hexdigest()[:8], key.encode())
    write("fuzz_slot", "key-binary", bytes([0, 0xff, ord("{"), 0x80, ord("}"), 0]))


if __name__ == "__main__":
    main()
