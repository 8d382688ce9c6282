/* dbpool.core - the C half of the Lua module `dbpool`.

   A thin layer over dbpool.h: one hub per lua_State (kept in the registry),
   pools, ops, pinned connections and subscriptions as userdata, and value
   conversion. Everything that calls user functions (tasks, promises'
   callbacks, transactions, map) lives in lua/dbpool.lua, where pcall may
   yield. Nothing here keeps Lua state in C statics.

   The hub never calls Lua: op callbacks, pool events and pub/sub messages
   are queued in C and handed to Lua by core.step(), after the hub's round. */
#define _POSIX_C_SOURCE 200809L
#define DBPOOL_IMPLEMENTATION
#define DBPOOL_STATIC
#include "../dbpool.h"

#include <lua.h>
#include <lauxlib.h>
#include <signal.h>

#define HUB_KEY "dbpool.hub"
#define POOLS_KEY "dbpool.pools"        /* weak: lpool* -> pool userdata */
#define PROMISE_MT_KEY "dbpool.promise_mt"
#define ERROR_MT_KEY "dbpool.error_mt"
#define POOL_MT "dbpool.pool"
#define OP_MT "dbpool.op"
#define CONN_MT "dbpool.conn"
#define SUB_MT "dbpool.sub"
#define HUB_MT "dbpool.hubud"

/* BK_MYSQL: an SQL pool, MySQL or PostgreSQL (results alike, dbp_field.vtype says how to read a cell) */
enum { BK_MYSQL = 1, BK_REDIS = 2 };

/* The exception to "no C statics": a signal handler receives no context, and
   signal dispositions are process-wide anyway. Plain integers, never Lua
   state (see the signals section). */
static int sig_pipe_w = -1;
static volatile sig_atomic_t sig_count, sig_exit_on_second = 1;

typedef struct lhub lhub;

typedef struct lpool {
    dbp_pool *p;
    lhub *h;
    int backend;
    unsigned events;             /* bit per dbp_event_type Lua listens to */
    struct lpool *next;
} lpool;

/* The C side of a promise. Most (queries and commands) are "light": plain
   memory, freed as soon as Lua has seen the op settle, with the promise
   referenced from the registry meanwhile. Ops whose promise Lua reaches into
   (ping's times, acquire, streams, close, sleep) are a userdata with __gc,
   referenced until they settle and kept by their promise's `_op`. */
typedef struct lop {
    dbp_op *op;
    lhub *h;
    lpool *pool;
    int backend;
    int ref;                     /* strong ref (the userdata) until Lua saw it settle */
    int slot;                    /* a light op: its promise's index in the hub's in-flight table */
    int queued;                  /* in the hub's ready list */
    int light;
    struct lop *next_ready;      /* (also the hub's free list of light ops) */
    struct lop *live_prev, *live_next; /* light ops not yet delivered (the hub frees them at shutdown) */
    dbp_op **kids;               /* a batch (query_many, call_many): its ops in order, op NULL */
    int nkids, left;             /* ... and how many have not settled */
} lop;

typedef struct lconn {
    dbp_conn *c;
    lhub *h;
    lpool *pool;
    int backend;
    struct lconn *next;
} lconn;

typedef struct lsub {
    dbp_sub *s;
    lhub *h;
    lpool *pool;
    struct lsub *next;
} lsub;

/* An event or a pub/sub message, copied out of the hub's round. */
typedef struct lmsg {
    struct lmsg *next;
    int is_message;
    lpool *pool;
    lsub *sub;
    int type;
    long long duration_us;
    int conn_id;
    dbp_error err;
    int has_err;
    size_t n1, n2, n3;
    char *s1, *s2, *s3;          /* message / channel / pattern / payload */
} lmsg;

/* The columns table of a result shape (its column names, in order), kept
   so that every result of that shape shares one interned list instead of
   building its own: the names are the row tables' keys too. */
#define COLCACHE 16
typedef struct colshape {
    unsigned hash;
    size_t ncols, klen;
    char *key;                   /* each name, then a NUL */
    int ref;                     /* the columns table, LUA_NOREF when empty */
} colshape;

/* Strings the hot paths use as keys and values, interned once per hub and
   pushed from the registry (a lua_rawgeti) instead of looked up by their C
   text on every use (lua_setfield, lua_pushliteral: a hash of the pointer,
   a strcmp, then the table's own lookup). */
enum { K_STATE, K_VALUE, K_PENDING, K_FULFILLED, K_REJECTED, K_WAITERS, K_SWAIT, K_N, K_COLUMNS, K_AFFECTED,
       K_INSERT_ID, K_WARNINGS, K_ROW, K_NAMES, NKEYS };
static const char *const key_names[NKEYS] = { "_state", "_value", "pending", "fulfilled", "rejected", "_waiters",
                                              "_swait", "n", "columns", "affected_rows", "insert_id", "warning_count",
                                              "row", "_names" };

/* A batch's arguments, every command's in one pair of arrays: pointers into
   the strings of the command tables (which the list keeps alive for the
   call: no copy, no Lua string per argument) or into `nums`, where numbers
   are written as text. The arrays are the hub's, kept from batch to batch
   (no garbage per batch): call_many makes its promise first, then reads the
   commands (no Lua allocation, no Lua code: nothing can call call_many
   again meanwhile) and submits them. */
typedef struct batch_argv {
    const char **argv;
    size_t *lens;
    int *start;                  /* command i's arguments: [start[i], start[i + 1]) */
    int nargs, cap, capcmds;
    char *nums;
    size_t nnums, capnums;
} batch_argv;

struct lhub {
    dbp_hub *hub;
    int keys[NKEYS];             /* registry refs of key_names' strings */
    lop *ready_head, *ready_tail;
    lop *live;                   /* light ops in flight */
    lop *free_lops;              /* light ops to reuse, each keeping its slot */
    int nslots;                  /* slots handed out so far */
    int inflight;                /* registry ref: slot -> promise of a light op in flight (false when free) */
    int promise_mt;              /* registry ref of the promise metatable */
    int empty;                   /* registry ref of an empty list: the steps that settle nothing Lua must see */
    colshape cc[COLCACHE];
    batch_argv bargv;            /* call_many's argument arrays */
    int cc_next;
    lmsg *msg_head, *msg_tail;
    lpool *pools;
    lconn *conns;
    lsub *subs;
    int closed;
    int nmsgs;
    /* SIGINT/SIGTERM for the dbpool command: the read end of the signal pipe */
    int sigfd;
};

/* ---- helpers ------------------------------------------------------------ */

/* Pushes key_names[k] (interned in the hub; by its text without one). */
static void push_key(lua_State *L, const lhub *h, int k)
{
    if (h) lua_rawgeti(L, LUA_REGISTRYINDEX, h->keys[k]);
    else lua_pushstring(L, key_names[k]);
}

static lhub *get_hub(lua_State *L)
{
    lhub *h;
    lua_getfield(L, LUA_REGISTRYINDEX, HUB_KEY);
    h = (lhub *)lua_touserdata(L, -1);
    lua_pop(L, 1);
    if (!h || h->closed || !h->hub) luaL_error(L, "dbpool: the module's hub is closed");
    return h;
}

static void push_error(lua_State *L, const dbp_error *e)
{
    lua_createtable(L, 0, 7);
    lua_pushstring(L, dbp_kind_name(dbp_rc_kind(e->rc)));
    lua_setfield(L, -2, "kind");
    if (e->code) { lua_pushinteger(L, e->code); lua_setfield(L, -2, "code"); }
    if (e->sqlstate[0]) { lua_pushstring(L, e->sqlstate); lua_setfield(L, -2, "sqlstate"); }
    lua_pushstring(L, e->message);
    lua_setfield(L, -2, "message");
    lua_pushboolean(L, e->sent);
    lua_setfield(L, -2, "sent");
    lua_pushstring(L, dbp_rc_name(e->rc));
    lua_setfield(L, -2, "name");
    lua_getfield(L, LUA_REGISTRYINDEX, ERROR_MT_KEY);
    lua_setmetatable(L, -2);
}

/* A rejected op's error, with PostgreSQL's detail and hint when it has them. */
static void push_op_error(lua_State *L, const dbp_op *op)
{
    const char *detail = dbp_op_error_detail(op), *hint = dbp_op_error_hint(op);
    push_error(L, dbp_op_error(op));
    if (*detail) { lua_pushstring(L, detail); lua_setfield(L, -2, "detail"); }
    if (*hint) { lua_pushstring(L, hint); lua_setfield(L, -2, "hint"); }
}

/* Raises a usage error table (kind "usage") at the call. */
static int usage_error(lua_State *L, int rc, const char *fmt, ...)
{
    dbp_error e;
    va_list ap;
    memset(&e, 0, sizeof e);
    e.rc = rc;
    va_start(ap, fmt);
    vsnprintf(e.message, sizeof e.message, fmt, ap);
    va_end(ap);
    push_error(L, &e);
    return lua_error(L);
}

/* ---- value conversion ---------------------------------------------------- */

static int is_int_type(int t)
{
    return t == MYSQL_TYPE_TINY || t == MYSQL_TYPE_SHORT || t == MYSQL_TYPE_LONG ||
           t == MYSQL_TYPE_INT24 || t == MYSQL_TYPE_LONGLONG || t == MYSQL_TYPE_YEAR;
}

/* A decimal integer of at most 18 digits (it cannot overflow), as MySQL's
   text protocol sends them; 0 for anything else (strtoll decides then). */
static int parse_small_int(const char *s, size_t len, long long *out)
{
    size_t i = 0;
    long long v = 0;
    int neg = 0;
    if (len && s[0] == '-') { neg = 1; i = 1; }
    if (i == len || len - i > 18) return 0;
    for (; i < len; i++) {
        unsigned d = (unsigned)(unsigned char)s[i] - '0';
        if (d > 9) return 0;
        v = v * 10 + (long long)d;
    }
    *out = neg ? -v : v;
    return 1;
}

static void push_cell(lua_State *L, const dbp_field *f, const dbp_cell *c)
{
    if (!c->data) { lua_pushlightuserdata(L, NULL); return; }
    switch (f->vtype) {
    case DBP_BOOL: lua_pushboolean(L, c->data[0] == 't'); return;
    case DBP_INT: {
        char *end;
        long long v;
        errno = 0;
        v = strtoll(c->data, &end, 10);
        if (errno == 0 && *end == '\0') lua_pushinteger(L, (lua_Integer)v);
        else lua_pushlstring(L, c->data, c->len);
        return;
    }
    case DBP_UINT: {
        char *end;
        unsigned long long u;
        errno = 0;
        u = strtoull(c->data, &end, 10);
        if (errno == 0 && *end == '\0' && u <= (unsigned long long)LLONG_MAX) lua_pushinteger(L, (lua_Integer)u);
        else lua_pushlstring(L, c->data, c->len); /* beyond 2^63-1 stays a string */
        return;
    }
    case DBP_DOUBLE: lua_pushnumber(L, strtod(c->data, NULL)); return;
    case DBP_TEXT: case DBP_BLOB: lua_pushlstring(L, c->data, c->len); return;
    default: break; /* (a field without vtype: read it from the MySQL type) */
    }
    if (is_int_type(f->type)) {
        char *end;
        long long quick;
        if (parse_small_int(c->data, c->len, &quick)) { lua_pushinteger(L, (lua_Integer)quick); return; }
        errno = 0;
        if ((f->flags & UNSIGNED_FLAG) && f->type == MYSQL_TYPE_LONGLONG) {
            unsigned long long u = strtoull(c->data, &end, 10);
            if (errno == 0 && *end == '\0' && u <= (unsigned long long)LLONG_MAX) lua_pushinteger(L, (lua_Integer)u);
            else lua_pushlstring(L, c->data, c->len); /* beyond 2^63-1 stays a string */
            return;
        }
        {
            long long v = strtoll(c->data, &end, 10);
            if (errno == 0 && *end == '\0') { lua_pushinteger(L, (lua_Integer)v); return; }
        }
    } else if (f->type == MYSQL_TYPE_FLOAT || f->type == MYSQL_TYPE_DOUBLE) {
        lua_pushnumber(L, strtod(c->data, NULL));
        return;
    }
    /* DECIMAL, dates and times, text and binary: strings */
    lua_pushlstring(L, c->data, c->len);
}

/* A row as {column = value}. */
static void push_row(lua_State *L, const dbp_field *fields, size_t ncols, const dbp_cell *cells, int names_idx)
{
    size_t j;
    lua_createtable(L, 0, (int)ncols);
    for (j = 0; j < ncols; j++) {
        lua_rawgeti(L, names_idx, (lua_Integer)j + 1);
        push_cell(L, &fields[j], &cells[j]);
        lua_rawset(L, -3);
    }
}

static void push_columns(lua_State *L, const dbp_field *fields, size_t ncols)
{
    size_t j;
    lua_createtable(L, (int)ncols, 0);
    for (j = 0; j < ncols; j++) {
        lua_pushlstring(L, fields[j].name, fields[j].name_len);
        lua_rawseti(L, -2, (lua_Integer)j + 1);
    }
}

/* Pushes the columns table of this result shape, from the hub's cache when
   a result of the same column names was converted before (one table shared
   by every result of the shape: treat it as read-only). */
static void push_columns_cached(lua_State *L, lhub *h, const dbp_field *fields, size_t ncols)
{
    unsigned hash = 2166136261u;
    size_t j, k, klen = 0;
    colshape *e;
    for (j = 0; j < ncols; j++) {
        const unsigned char *p = (const unsigned char *)fields[j].name;
        for (k = 0; k < fields[j].name_len; k++) hash = (hash ^ p[k]) * 16777619u;
        hash = (hash ^ 0xffu) * 16777619u;
        klen += fields[j].name_len + 1;
    }
    for (j = 0; j < COLCACHE; j++) {
        const char *q;
        e = &h->cc[j];
        if (e->ref == LUA_NOREF || e->hash != hash || e->ncols != ncols || e->klen != klen) continue;
        for (k = 0, q = e->key; k < ncols; k++) {
            size_t n = fields[k].name_len;
            if ((n && memcmp(q, fields[k].name, n) != 0) || q[n] != '\0') break;
            q += n + 1;
        }
        if (k < ncols) continue;
        /* the shared table is the row keys' source: used only while it still
           holds the names (code that changed a result's columns gets its own) */
        lua_rawgeti(L, LUA_REGISTRYINDEX, e->ref);
        if (lua_rawlen(L, -1) == ncols) {
            for (k = 0; k < ncols; k++) {
                size_t n;
                const char *v;
                lua_rawgeti(L, -1, (lua_Integer)k + 1);
                v = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &n) : NULL;
                lua_pop(L, 1);
                if (!v || n != fields[k].name_len || (n && memcmp(v, fields[k].name, n) != 0)) break;
            }
            if (k == ncols) return;
        }
        lua_pop(L, 1);
        break;                                    /* changed: replaced below */
    }
    push_columns(L, fields, ncols);
    if (ncols == 0 || klen > 4096) return;
    {
        char *key = (char *)malloc(klen), *q = key;
        if (!key) return;
        for (k = 0; k < ncols; k++) {
            if (fields[k].name_len) memcpy(q, fields[k].name, fields[k].name_len);
            q += fields[k].name_len;
            *q++ = '\0';
        }
        if (j < COLCACHE) {
            e = &h->cc[j];                         /* the entry whose table was changed */
        } else {
            e = &h->cc[h->cc_next];
            h->cc_next = (h->cc_next + 1) % COLCACHE;
        }
        if (e->ref != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, e->ref);
        free(e->key);
        e->key = NULL;
        e->ref = LUA_NOREF;
        lua_pushvalue(L, -1);
        e->ref = luaL_ref(L, LUA_REGISTRYINDEX);
        e->key = key;
        e->hash = hash;
        e->ncols = ncols;
        e->klen = klen;
    }
}

static void push_one_result(lua_State *L, lhub *h, const dbp_result *r)
{
    size_t i;
    int names, t;
    lua_createtable(L, (int)r->nrows, r->info && *r->info ? 5 : 4);
    t = lua_gettop(L);
    push_key(L, h, K_COLUMNS);                   /* (each key pushed before its value: no lua_insert) */
    if (h) push_columns_cached(L, h, r->fields, r->ncols);
    else push_columns(L, r->fields, r->ncols);
    names = lua_gettop(L);
    for (i = 0; i < r->nrows; i++) {
        push_row(L, r->fields, r->ncols, &r->cells[i * r->ncols], names);
        lua_rawseti(L, t, (lua_Integer)i + 1);
    }
    lua_rawset(L, t);                            /* columns */
    push_key(L, h, K_AFFECTED);
    lua_pushinteger(L, (lua_Integer)r->affected_rows);
    lua_rawset(L, t);
    push_key(L, h, K_INSERT_ID);
    lua_pushinteger(L, (lua_Integer)r->insert_id);
    lua_rawset(L, t);
    push_key(L, h, K_WARNINGS);
    lua_pushinteger(L, (lua_Integer)r->warning_count);
    lua_rawset(L, t);
    if (r->info && *r->info) { lua_pushstring(L, r->info); lua_setfield(L, -2, "info"); }
}

/* The first result set, with `results` listing every set when there are several. */
static void push_result(lua_State *L, lhub *h, const dbp_result *r)
{
    if (!r) { lua_createtable(L, 0, 0); return; }
    push_one_result(L, h, r);
    if (r->next) {
        const dbp_result *x;
        int i = 2;
        lua_createtable(L, 2, 0);
        lua_pushvalue(L, -2);
        lua_rawseti(L, -2, 1);
        for (x = r->next; x; x = x->next) {
            push_one_result(L, h, x);
            lua_rawseti(L, -2, i++);
        }
        lua_setfield(L, -2, "results");
    }
}

static void push_reply(lua_State *L, const dbp_reply *r, int depth)
{
    size_t i;
    if (!r) { lua_pushlightuserdata(L, NULL); return; }
    luaL_checkstack(L, 4, "reply nested too deeply");
    switch (r->type) {
    case DBP_REPLY_STRING: case DBP_REPLY_STATUS: lua_pushlstring(L, r->str, r->len); break;
    case DBP_REPLY_INTEGER: lua_pushinteger(L, (lua_Integer)r->integer); break;
    case DBP_REPLY_NIL: lua_pushlightuserdata(L, NULL); break;
    case DBP_REPLY_ERROR: {
        /* an error inside an array (EXEC): an error object in its place */
        dbp_error e;
        memset(&e, 0, sizeof e);
        e.rc = DBP_EREDIS;
        e.sent = 1;
        snprintf(e.message, sizeof e.message, "%s", r->str);
        push_error(L, &e);
        break;
    }
    case DBP_REPLY_ARRAY:
        lua_createtable(L, (int)r->elements, 0);
        for (i = 0; i < r->elements; i++) {
            push_reply(L, r->element[i], depth + 1);
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        break;
    default: lua_pushlightuserdata(L, NULL); break;
    }
}

/* ---- hub callbacks (no Lua inside) ---------------------------------------- */

static void op_ready(dbp_op *op, void *ud)
{
    lop *o = (lop *)ud;
    (void)op;
    if (o->queued) return;
    o->queued = 1;
    o->next_ready = NULL;
    if (o->h->ready_tail) o->h->ready_tail->next_ready = o; else o->h->ready_head = o;
    o->h->ready_tail = o;
}

/* One op of a batch settled; the batch is ready when the last one has. */
static void kid_ready(dbp_op *op, void *ud)
{
    lop *o = (lop *)ud;
    if (--o->left == 0) op_ready(op, ud);
}

static void msg_push(lhub *h, lmsg *m)
{
    if (h->nmsgs > 100000) { free(m->s1); free(m->s2); free(m->s3); free(m); return; } /* nobody drives: bounded */
    m->next = NULL;
    if (h->msg_tail) h->msg_tail->next = m; else h->msg_head = m;
    h->msg_tail = m;
    h->nmsgs++;
}

static char *copy_bytes(const char *s, size_t n)
{
    char *p = (char *)malloc(n + 1);
    if (!p) return NULL;
    if (n) memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

static void pool_event(dbp_pool *p, const dbp_event *ev, void *ud)
{
    lpool *lp = (lpool *)ud;
    lmsg *m;
    (void)p;
    /* nobody listens: nothing to copy (errors always go, for leaks and warnings) */
    if (ev->type != DBP_EVENT_ERROR && !(lp->events & (1u << ev->type))) return;
    m = (lmsg *)calloc(1, sizeof *m);
    if (!m) return;
    m->pool = lp;
    m->type = (int)ev->type;
    m->duration_us = ev->duration_us;
    m->conn_id = ev->conn_id;
    m->n1 = ev->message ? strlen(ev->message) : 0;
    m->s1 = copy_bytes(ev->message ? ev->message : "", m->n1);
    if (ev->error) { m->err = *ev->error; m->has_err = 1; }
    msg_push(lp->h, m);
}

static void sub_message(dbp_sub *s, const dbp_message *msg, void *ud)
{
    lsub *ls = (lsub *)ud;
    lmsg *m = (lmsg *)calloc(1, sizeof *m);
    (void)s;
    if (!m) return;
    m->is_message = 1;
    m->sub = ls;
    m->type = (int)msg->type;
    m->s1 = copy_bytes(msg->channel ? msg->channel : "", m->n1 = msg->channel_len);
    m->s2 = copy_bytes(msg->payload ? msg->payload : "", m->n2 = msg->payload_len);
    m->s3 = msg->pattern ? copy_bytes(msg->pattern, m->n3 = msg->pattern_len) : NULL;
    msg_push(ls->h, m);
}

/* ---- promises ------------------------------------------------------------- */

/* Writes a settled op's outcome into its promise table (at index pi). */
static void settle_promise(lua_State *L, lop *o, int pi)
{
    dbp_op *op = o->op;
    if (dbp_op_state(op) == DBP_OP_FULFILLED) {
        push_key(L, o->h, K_STATE);
        push_key(L, o->h, K_FULFILLED);
        lua_rawset(L, pi);
        push_key(L, o->h, K_VALUE);
        if (o->backend == BK_MYSQL) {
            const dbp_result *r = dbp_op_result(op);
            push_result(L, o->h, r);
        } else if (o->backend == BK_REDIS) {
            push_reply(L, dbp_op_reply(op), 0);
        } else {
            lua_pushboolean(L, 1);
        }
        lua_rawset(L, pi);
    } else {
        push_key(L, o->h, K_STATE);
        push_key(L, o->h, K_REJECTED);
        lua_rawset(L, pi);
        push_key(L, o->h, K_VALUE);
        push_op_error(L, op);
        lua_rawset(L, pi);
    }
}

/* A batch settles fulfilled with the list of its ops' outcomes: a value, or
   an error object where one failed. */
static void settle_batch(lua_State *L, lop *o, int pi)
{
    int i;
    push_key(L, o->h, K_STATE);
    push_key(L, o->h, K_FULFILLED);
    lua_rawset(L, pi);
    push_key(L, o->h, K_VALUE);
    lua_createtable(L, o->nkids, 1);
    for (i = 0; i < o->nkids; i++) {
        dbp_op *op = o->kids[i];
        if (dbp_op_state(op) == DBP_OP_FULFILLED) {
            if (o->backend == BK_MYSQL) push_result(L, o->h, dbp_op_result(op));
            else push_reply(L, dbp_op_reply(op), 0);
        } else {
            push_error(L, dbp_op_error(op));
        }
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    push_key(L, o->h, K_N);
    lua_pushinteger(L, o->nkids);
    lua_rawset(L, -3);
    lua_rawset(L, pi);
}

/* Makes the op userdata and its promise; returns with the promise on top. */
static lop *new_op(lua_State *L, lhub *h, lpool *lp, dbp_op *op, int backend)
{
    lop *o;
    if (!op) luaL_error(L, "dbpool: out of memory");
    o = (lop *)lua_newuserdatauv(L, sizeof *o, 1);
    memset(o, 0, sizeof *o);
    o->op = op;
    o->h = h;
    o->pool = lp;
    o->backend = backend;
    o->ref = LUA_NOREF;
    luaL_setmetatable(L, OP_MT);
    lua_createtable(L, 0, 4);                    /* the promise */
    lua_pushvalue(L, -2);
    lua_setfield(L, -2, "_op");
    lua_rawgeti(L, LUA_REGISTRYINDEX, h->promise_mt);
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, -3, 1);                 /* op -> promise */
    if (dbp_op_state(op) >= DBP_OP_FULFILLED && !dbp_op_result(op) && !dbp_op_reply(op)) {
        /* settled at submit (refused): the promise is settled already */
        settle_promise(L, o, lua_gettop(L));
        lua_remove(L, -2);
        return o;
    }
    lua_pushliteral(L, "pending");
    lua_setfield(L, -2, "_state");
    lua_pushvalue(L, -2);
    o->ref = luaL_ref(L, LUA_REGISTRYINDEX);     /* alive until Lua saw it settle */
    dbp_op_on_settle(op, op_ready, o);
    lua_remove(L, -2);                           /* leave the promise */
    return o;
}

/* A light op's C side: from the hub's free list (with the slot it keeps in
   the in-flight table), or new, its slot made in the table first. */
static lop *get_light_op(lua_State *L, lhub *h)
{
    lop *o = h->free_lops;
    if (o) { h->free_lops = o->next_ready; o->next_ready = NULL; return o; }
    o = (lop *)calloc(1, sizeof *o);
    if (!o) return NULL;
    o->slot = ++h->nslots;
    o->next_ready = h->free_lops;              /* listed before the table grows, which may raise */
    h->free_lops = o;
    lua_rawgeti(L, LUA_REGISTRYINDEX, h->inflight);
    lua_pushboolean(L, 0);
    lua_rawseti(L, -2, o->slot);
    lua_pop(L, 1);
    h->free_lops = o->next_ready;
    o->next_ready = NULL;
    return o;
}

/* A light op and its promise; returns with the promise on top. */
static void new_light_op(lua_State *L, lhub *h, lpool *lp, dbp_op *op, int backend)
{
    lop *o;
    if (!op) luaL_error(L, "dbpool: out of memory");
    lua_createtable(L, 0, 4);                    /* the promise */
    lua_rawgeti(L, LUA_REGISTRYINDEX, h->promise_mt);
    lua_setmetatable(L, -2);
    if (dbp_op_state(op) >= DBP_OP_FULFILLED && !dbp_op_result(op) && !dbp_op_reply(op)) {
        lop tmp;                                 /* settled at submit (refused) */
        memset(&tmp, 0, sizeof tmp);
        tmp.op = op;
        tmp.backend = backend;
        settle_promise(L, &tmp, lua_gettop(L));
        dbp_op_free(op);
        return;
    }
    push_key(L, h, K_STATE);
    push_key(L, h, K_PENDING);
    lua_rawset(L, -3);
    o = get_light_op(L, h);                      /* (after the Lua allocations, which may raise) */
    if (!o) {
        dbp_op_free(op);
        luaL_error(L, "dbpool: out of memory");
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, h->inflight);
    lua_pushvalue(L, -2);
    lua_rawseti(L, -2, o->slot);                 /* an existing slot: no allocation */
    lua_pop(L, 1);
    o->ref = 0;
    o->op = op;
    o->h = h;
    o->pool = lp;
    o->backend = backend;
    o->light = 1;
    o->queued = 0;
    o->live_prev = NULL;
    o->live_next = h->live;
    if (h->live) h->live->live_prev = o;
    h->live = o;
    dbp_op_on_settle(op, op_ready, o);
}

/* Back to the free list (its promise slot already cleared, or never to be read). */
static void free_light_op(lhub *h, lop *o)
{
    if (o->live_prev) o->live_prev->live_next = o->live_next; else h->live = o->live_next;
    if (o->live_next) o->live_next->live_prev = o->live_prev;
    if (o->op) { dbp_op_on_settle(o->op, NULL, NULL); dbp_op_free(o->op); }
    o->op = NULL;
    if (o->kids) {
        int i;
        for (i = 0; i < o->nkids; i++)
            if (o->kids[i]) { dbp_op_on_settle(o->kids[i], NULL, NULL); dbp_op_free(o->kids[i]); }
        free(o->kids);
        o->kids = NULL;
        o->nkids = o->left = 0;
    }
    o->live_prev = o->live_next = NULL;
    o->next_ready = h->free_lops;
    h->free_lops = o;
}

static int l_op_gc(lua_State *L)
{
    lop *o = (lop *)luaL_checkudata(L, 1, OP_MT);
    if (o->op) {
        dbp_op_on_settle(o->op, NULL, NULL);
        dbp_op_free(o->op);
        o->op = NULL;
    }
    return 0;
}

static lop *check_op(lua_State *L, int i)
{
    lop *o = (lop *)luaL_checkudata(L, i, OP_MT);
    if (!o->op) luaL_error(L, "dbpool: op is gone");
    return o;
}

/* op:times() -> submitted, started, settled (seconds of the monotonic clock, 0 if not yet) */
static int l_op_times(lua_State *L)
{
    lop *o = check_op(L, 1);
    long long a, b, c;
    dbp_op_times(o->op, &a, &b, &c);
    lua_pushnumber(L, (double)a / 1e6);
    lua_pushnumber(L, b ? (double)b / 1e6 : 0);
    lua_pushnumber(L, c ? (double)c / 1e6 : 0);
    return 3;
}

/* stream: op:fetch() -> "row", row | "pending" | "done" | "error", err */
/* (a closure over the op metatable: checked by comparing it, as wrapped_pool does) */
static int l_op_fetch(lua_State *L)
{
    lop *o = (lop *)lua_touserdata(L, 1);
    const dbp_cell *row = NULL;
    size_t ncols = 0;
    int rc, same = 0;
    if (o && lua_getmetatable(L, 1)) {
        same = lua_rawequal(L, -1, lua_upvalueindex(1));
        lua_pop(L, 1);
    }
    if (!same || !o->op) o = check_op(L, 1);     /* (raises its usual error) */
    rc = dbp_op_fetch(o->op, &row, &ncols);
    if (rc == DBP_ROW) {
        size_t nfields = 0;
        const dbp_field *fields = dbp_op_fields(o->op, &nfields);
        int names;
        luaL_checktype(L, 2, LUA_TTABLE);
        push_key(L, o->h, K_ROW);
        /* column names are cached in the caller's table (argument 2), as _names */
        push_key(L, o->h, K_NAMES);
        if (lua_rawget(L, 2) != LUA_TTABLE) {
            lua_pop(L, 1);
            push_columns(L, fields, nfields);
            push_key(L, o->h, K_NAMES);
            lua_pushvalue(L, -2);
            lua_rawset(L, 2);
        }
        names = lua_gettop(L);
        push_row(L, fields, nfields, row, names);
        lua_remove(L, names);
        return 2;
    }
    if (rc == DBP_PENDING) { lua_pushliteral(L, "pending"); return 1; }
    if (rc == DBP_OK) { lua_pushliteral(L, "done"); return 1; }
    lua_pushliteral(L, "error");
    push_op_error(L, o->op);
    return 2;
}

/* op:cancel(): a stream abandoned by its consumer */
static int l_op_cancel(lua_State *L)
{
    lop *o = (lop *)luaL_checkudata(L, 1, OP_MT);
    if (o->op && o->ref != LUA_NOREF) {
        /* abandoned by its consumer: free the C op (it drains on its own) */
        dbp_op_on_settle(o->op, NULL, NULL);
        luaL_unref(L, LUA_REGISTRYINDEX, o->ref);
        o->ref = LUA_NOREF;
        dbp_op_free(o->op);
        o->op = NULL;
    }
    return 0;
}

static dbp_value *read_params(lua_State *L, int t, dbp_value *small, size_t *n_out);
#define SMALL_PARAMS 8

/* op:copy_row(values) -> true (room for more) | false (taken; wait for the
   buffer to drain, op:copy_level()); raises the op's error once it failed */
static int l_op_copy_row(lua_State *L)
{
    lop *o = check_op(L, 1);
    dbp_value small[SMALL_PARAMS];
    size_t n;
    dbp_value *v;
    int rc;
    luaL_checktype(L, 2, LUA_TTABLE);
    v = read_params(L, 2, small, &n);
    rc = dbp_op_copy_row(o->op, v, n);
    if (rc == DBP_OK || rc == DBP_PENDING) { lua_pushboolean(L, rc == DBP_OK); return 1; }
    if (dbp_op_state(o->op) == DBP_OP_REJECTED) { push_op_error(L, o->op); return lua_error(L); }
    return usage_error(L, rc, rc == DBP_EPARAM ? "copy_row: a value COPY cannot take (NaN, infinity, text with a NUL byte)"
                                               : "copy_row: %s", dbp_rc_string(rc));
}

/* op:copy_end([error]): the data is complete (or, with a message, the COPY fails) */
static int l_op_copy_end(lua_State *L)
{
    lop *o = check_op(L, 1);
    dbp_op_copy_end(o->op, luaL_optstring(L, 2, NULL));
    return 0;
}

/* op:copy_level() -> true while the op's buffer is more than half full */
static int l_op_copy_level(lua_State *L)
{
    lop *o = check_op(L, 1);
    lua_pushboolean(L, dbp_op_state(o->op) != DBP_OP_REJECTED && dbp_op_state(o->op) != DBP_OP_FULFILLED &&
                       dbp_op_copy_wait(o->op, 0) == DBP_PENDING);
    return 1;
}

static const luaL_Reg op_methods[] = {
    { "times", l_op_times },
    { "cancel", l_op_cancel },
    { "copy_row", l_op_copy_row },
    { "copy_end", l_op_copy_end },
    { "copy_full", l_op_copy_level },
    { NULL, NULL }
};

/* ---- pools ------------------------------------------------------------------ */

static lpool *check_pool(lua_State *L, int i)
{
    lpool *lp = (lpool *)luaL_checkudata(L, i, POOL_MT);
    if (!lp->p) usage_error(L, DBP_ECLOSED, "the pool is closed and released");
    return lp;
}

/* The pool methods of dbpool.lua's wrapper (pool:query, :call, :query_many,
   :call_many) are closures over the pool metatable and the string "_c":
   self._c is read with a rawget of the interned key and checked by comparing
   its metatable, without luaL_checkudata's lookup of the metatable by name. */
static lpool *wrapped_pool(lua_State *L, const char *usage)
{
    lpool *lp;
    int same;
    if (lua_type(L, 1) != LUA_TTABLE) usage_error(L, DBP_EUSAGE, "%s", usage);
    lua_pushvalue(L, lua_upvalueindex(2));
    lua_rawget(L, 1);
    lua_replace(L, 1);
    lp = (lpool *)lua_touserdata(L, 1);
    if (!lp || !lua_getmetatable(L, 1)) return check_pool(L, 1);   /* (raises its usual error) */
    same = lua_rawequal(L, -1, lua_upvalueindex(1));
    lua_pop(L, 1);
    if (!same) return check_pool(L, 1);
    if (!lp->p) usage_error(L, DBP_ECLOSED, "the pool is closed and released");
    return lp;
}

/* A list option (a string, or a list of strings) of the options table at t
   as a C array: a userdata left on the stack, holding the list alive (its
   strings are the list's). Returns the count, -1 when the option is absent
   (nothing left on the stack). what names one element in errors. */
static int read_string_list(lua_State *L, int t, const char *name, const char *what, const char ***out)
{
    int n, i;
    const char **arr;
    if (lua_getfield(L, t, name) == LUA_TNIL) { lua_pop(L, 1); return -1; }
    if (lua_type(L, -1) == LUA_TSTRING) {
        lua_createtable(L, 1, 0);
        lua_pushvalue(L, -2);
        lua_rawseti(L, -2, 1);
        lua_replace(L, -2);
    }
    if (!lua_istable(L, -1)) usage_error(L, DBP_EOPTION, "option '%s' must be a string or a list of strings", name);
    n = (int)lua_rawlen(L, -1);
    arr = (const char **)lua_newuserdatauv(L, sizeof(char *) * (size_t)(n ? n : 1), 1);
    lua_pushvalue(L, -2);
    lua_setiuservalue(L, -2, 1); /* the list stays alive with the array */
    for (i = 0; i < n; i++) {
        lua_rawgeti(L, -2, i + 1);
        if (lua_type(L, -1) != LUA_TSTRING) usage_error(L, DBP_EOPTION, "%s %d is not a string", what, i + 1);
        arr[i] = lua_tostring(L, -1);
        lua_pop(L, 1);
    }
    lua_remove(L, -2); /* leave the array userdata on the stack */
    *out = arr;
    return n;
}

/* Reads an options table into the config. The strings stay referenced by
   the table; the init and replicas lists are copied to userdata left on
   the stack. */
static void read_options(lua_State *L, int t, dbp_pool_config *cfg)
{
    dbp_error e;
    const char **arr;
    int n;
    if ((n = read_string_list(L, t, "init", "init statement", &arr)) >= 0) { cfg->init = arr; cfg->ninit = n; }
    /* replicas = { "host:port" | url, ... } (MySQL) */
    if ((n = read_string_list(L, t, "replicas", "replica", &arr)) >= 0) { cfg->replicas = arr; cfg->nreplicas = n; }
    lua_pushnil(L);
    while (lua_next(L, t)) {
        const char *key;
        char num[64];
        const char *val = NULL;
        if (lua_type(L, -2) != LUA_TSTRING) { lua_pop(L, 1); continue; }
        key = lua_tostring(L, -2);
        if (strcmp(key, "init") == 0 || strcmp(key, "timeout") == 0 || strcmp(key, "replicas") == 0) { lua_pop(L, 1); continue; }
        if (strcmp(key, "backend") == 0) {
            if (lua_type(L, -1) != LUA_TSTRING) usage_error(L, DBP_EOPTION, "option 'backend' must be a string");
            cfg->backend = lua_tostring(L, -1);
            lua_pop(L, 1);
            continue;
        }
        switch (lua_type(L, -1)) {
        case LUA_TSTRING: val = lua_tostring(L, -1); break;
        case LUA_TNUMBER:
            if (lua_isinteger(L, -1)) snprintf(num, sizeof num, "%lld", (long long)lua_tointeger(L, -1));
            else snprintf(num, sizeof num, "%.17g", (double)lua_tonumber(L, -1));
            val = num;
            break;
        case LUA_TBOOLEAN: val = lua_toboolean(L, -1) ? "1" : "0"; break;
        default: usage_error(L, DBP_EOPTION, "option '%s' has an unusable value (%s)", key, luaL_typename(L, -1));
        }
        if (dbp_pool_config_set(cfg, key, val, &e) != DBP_OK) {
            push_error(L, &e);
            lua_error(L);
        }
        lua_pop(L, 1);
    }
}

/* core.open(url, opts) -> pool userdata */
static int l_open(lua_State *L)
{
    lhub *h = get_hub(L);
    const char *url = luaL_optstring(L, 1, NULL);
    dbp_pool_config cfg;
    dbp_error e;
    lpool *lp;
    dbp_pool_config_init(&cfg);
    cfg.url = url;
    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        read_options(L, 2, &cfg);
    }
    lp = (lpool *)lua_newuserdatauv(L, sizeof *lp, 1);
    memset(lp, 0, sizeof *lp);
    luaL_setmetatable(L, POOL_MT);
    cfg.on_event = pool_event;
    cfg.event_ud = lp;
    lp->p = dbp_pool_open(h->hub, &cfg, &e);
    if (!lp->p) { push_error(L, &e); return lua_error(L); }
    lp->h = h;
    lp->backend = strncmp(dbp_pool_backend(lp->p), "redis", 5) == 0 ? BK_REDIS : BK_MYSQL;
    lp->next = h->pools;
    h->pools = lp;
    lua_getfield(L, LUA_REGISTRYINDEX, POOLS_KEY);
    lua_pushvalue(L, -2);
    lua_rawsetp(L, -2, lp);
    lua_pop(L, 1);
    return 1;
}

static int l_pool_gc(lua_State *L)
{
    lpool *lp = (lpool *)luaL_checkudata(L, 1, POOL_MT);
    if (lp->p && lp->h && !lp->h->closed) {
        /* not closed by its owner: closed gracefully while the hub runs */
        dbp_pool_set_hook(lp->p, NULL, NULL);
        dbp_pool_free(lp->p);
    }
    lp->p = NULL;
    if (lp->h) {
        lpool **pp;
        for (pp = &lp->h->pools; *pp; pp = &(*pp)->next) if (*pp == lp) { *pp = lp->next; break; }
        /* events still queued for this pool are dropped when delivered */
        {
            lmsg *m;
            for (m = lp->h->msg_head; m; m = m->next) if (m->pool == lp) m->pool = NULL;
        }
    }
    return 0;
}

/* Converts Lua parameters into dbp_values (strings borrowed from the stack):
 * into small[] (SMALL_PARAMS long) when they fit, else a userdata on the stack. */
/* How many parameters the table at t holds (its n, else its length). */
static size_t count_params(lua_State *L, int t)
{
    size_t n;
    lua_getfield(L, t, "n");
    n = lua_isinteger(L, -1) ? (size_t)lua_tointeger(L, -1) : (size_t)lua_rawlen(L, t);
    lua_pop(L, 1);
    if (n > DBP_MAX_PARAMS) usage_error(L, DBP_EPARAM, "too many parameters (%lu)", (unsigned long)n);
    return n;
}

static void convert_params(lua_State *L, int t, dbp_value *v, size_t n);

static dbp_value *read_params(lua_State *L, int t, dbp_value *small, size_t *n_out)
{
    size_t n;
    dbp_value *v;
    if (lua_isnoneornil(L, t)) { *n_out = 0; return NULL; }
    if (!lua_istable(L, t)) usage_error(L, DBP_EPARAM, "parameters must be a table (a list), got %s", luaL_typename(L, t));
    n = count_params(L, t);
    v = n <= SMALL_PARAMS ? small : (dbp_value *)lua_newuserdatauv(L, sizeof(dbp_value) * n, 0);
    convert_params(L, t, v, n);
    /* the strings stay referenced from the caller's table until the op copied them */
    *n_out = n;
    return v;
}

/* The n parameters of the table at t as dbp_values (strings borrowed from the table). */
static void convert_params(lua_State *L, int t, dbp_value *v, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++) {
        lua_rawgeti(L, t, (lua_Integer)i + 1);
        switch (lua_type(L, -1)) {
        case LUA_TNIL: v[i] = dbp_v_null(); break;
        case LUA_TLIGHTUSERDATA:
            if (lua_touserdata(L, -1) != NULL) usage_error(L, DBP_EPARAM, "parameter %lu is a light userdata", (unsigned long)i + 1);
            v[i] = dbp_v_null();
            break;
        case LUA_TBOOLEAN: v[i] = dbp_v_bool(lua_toboolean(L, -1)); break;
        case LUA_TNUMBER:
            if (lua_isinteger(L, -1)) v[i] = dbp_v_int((long long)lua_tointeger(L, -1));
            else {
                double d = (double)lua_tonumber(L, -1);
                if (d != d) usage_error(L, DBP_EPARAM, "parameter %lu is NaN: SQL has no such number", (unsigned long)i + 1);
                if (d - d != 0) usage_error(L, DBP_EPARAM, "parameter %lu is infinite: SQL has no such number", (unsigned long)i + 1);
                v[i] = dbp_v_double(d);
            }
            break;
        case LUA_TSTRING: {
            size_t len;
            const char *s = lua_tolstring(L, -1, &len);
            v[i] = dbp_v_textn(s, len);
            /* bytes that are not UTF-8 go as a binary literal, never mangled by a charset */
            {
                const unsigned char *p = (const unsigned char *)s, *end = p + len;
                while (p < end) {
                    unsigned c = *p;
                    size_t k, need = c < 0x80 ? 0 : (c >> 5) == 6 ? 1 : (c >> 4) == 14 ? 2 : (c >> 3) == 30 ? 3 : 9;
                    if (need == 9 || (size_t)(end - p) <= need) { if (need) { v[i].type = DBP_BLOB; break; } }
                    for (k = 1; k <= need; k++) if ((p[k] & 0xC0) != 0x80) { v[i].type = DBP_BLOB; break; }
                    if (v[i].type == DBP_BLOB) break;
                    p += need + 1;
                }
            }
            break;
        }
        default:
            usage_error(L, DBP_EPARAM, "parameter %lu is a %s: use numbers, strings, booleans or dbpool.null",
                        (unsigned long)i + 1, luaL_typename(L, -1));
        }
        lua_pop(L, 1);
    }
}

static void read_op_options(lua_State *L, int t, dbp_op_options *o)
{
    memset(o, 0, sizeof *o);
    if (lua_isnoneornil(L, t)) return;
    /* usage errors are tables, never strings: the Lua layer passes them on as they are */
    if (!lua_istable(L, t)) usage_error(L, DBP_EOPTION, "options must be a table, got %s", luaL_typename(L, t));
    if (lua_getfield(L, t, "timeout") != LUA_TNIL) {
        double s = lua_type(L, -1) == LUA_TNUMBER ? lua_tonumber(L, -1) : 0;
        if (!(s > 0)) usage_error(L, DBP_EOPTION, "timeout must be a number of seconds above 0");
        o->timeout_ms = (int)(s * 1000.0 + 0.5);
        if (o->timeout_ms < 1) o->timeout_ms = 1;
    }
    lua_pop(L, 1);
    if (lua_getfield(L, t, "idempotent") != LUA_TNIL) o->idempotent = lua_toboolean(L, -1);
    lua_pop(L, 1);
    /* true a server-side prepared statement, false text, absent the pool's choice */
    if (lua_getfield(L, t, "prepare") != LUA_TNIL) o->prepare = lua_toboolean(L, -1) ? 1 : -1;
    lua_pop(L, 1);
    if (lua_getfield(L, t, "on") != LUA_TNIL) {
        const char *on = lua_tostring(L, -1);
        if (on && strcmp(on, "primary") == 0) o->on = DBP_ON_PRIMARY;
        else if (on && strcmp(on, "replica") == 0) o->on = DBP_ON_REPLICA;
        else usage_error(L, DBP_EOPTION, "option 'on' must be \"primary\" or \"replica\"");
    }
    lua_pop(L, 1);
    if (lua_getfield(L, t, "read_your_writes") != LUA_TNIL) o->read_your_writes = lua_toboolean(L, -1);
    lua_pop(L, 1);
}

/* A usage error found by the library at submit raises at the call. */
static void raise_if_usage(lua_State *L, dbp_op *op)
{
    if (op && dbp_op_state(op) == DBP_OP_REJECTED && dbp_rc_kind(dbp_op_rc(op)) == DBP_KIND_USAGE) {
        dbp_error e = *dbp_op_error(op);
        dbp_op_free(op);
        push_error(L, &e);
        lua_error(L);
    }
}

/* pool:query(sql, params, opts) -> promise */
static int pool_query(lua_State *L, lpool *lp)
{
    size_t len, n;
    const char *sql = luaL_checklstring(L, 2, &len);
    dbp_value small[SMALL_PARAMS];
    dbp_value *v = read_params(L, 3, small, &n);
    dbp_op_options o;
    dbp_op *op;
    read_op_options(L, 4, &o);
    if (lp->backend != BK_MYSQL) usage_error(L, DBP_EUSAGE, "query() needs a MySQL or PostgreSQL pool; use call() for Redis");
    op = dbp_pool_queryn(lp->p, sql, len, v, n, &o);
    raise_if_usage(L, op);
    new_light_op(L, lp->h, lp, op, BK_MYSQL);
    return 1;
}
static int l_pool_query(lua_State *L) { return pool_query(L, check_pool(L, 1)); }

/* The Lua pool's own query/call (dbpool.lua installs them as its methods):
   self is the wrapper table, whose _c is the pool userdata. Saves the Lua
   method that only forwarded to the core, a frame per query. */
static int l_wrap_query(lua_State *L)
{
    static const char use[] = "query: call it as pool:query(sql [, params [, opts]])";
    lpool *lp;
    if (lua_type(L, 1) != LUA_TTABLE) usage_error(L, DBP_EUSAGE, "%s", use);
    if (lua_type(L, 2) != LUA_TSTRING) usage_error(L, DBP_EUSAGE, "query: the SQL must be a string");
    lp = wrapped_pool(L, use);
    lua_settop(L, 4);   /* (what pool_query pushes goes above its four arguments) */
    return pool_query(L, lp);
}

static int pool_call(lua_State *L, lpool *lp);
static int l_wrap_call(lua_State *L)
{
    return pool_call(L, wrapped_pool(L, "call: call it as pool:call(cmd, ...)"));
}

/* pool:stream(sql, params, opts) -> promise (settles at the end of the rows) */
static int l_pool_stream(lua_State *L)
{
    lpool *lp = check_pool(L, 1);
    size_t n;
    const char *sql = luaL_checkstring(L, 2);
    dbp_value small[SMALL_PARAMS];
    dbp_value *v = read_params(L, 3, small, &n);
    dbp_op_options o;
    dbp_op *op;
    read_op_options(L, 4, &o);
    if (lp->backend != BK_MYSQL) usage_error(L, DBP_EUSAGE, "rows() needs a MySQL or PostgreSQL pool");
    op = dbp_pool_query_stream(lp->p, sql, v, n, &o);
    raise_if_usage(L, op);
    new_op(L, lp->h, lp, op, 0);
    return 1;
}

/* pool:copy_in(sql, opts) -> promise (PostgreSQL COPY ... FROM STDIN; its _op takes the rows) */
static int l_pool_copy_in(lua_State *L)
{
    lpool *lp = check_pool(L, 1);
    const char *sql = luaL_checkstring(L, 2);
    dbp_op_options o;
    dbp_op *op;
    read_op_options(L, 3, &o);
    op = dbp_pool_copy_in(lp->p, sql, &o);
    raise_if_usage(L, op);
    new_op(L, lp->h, lp, op, BK_MYSQL);
    return 1;
}

/* Reads argv from stack slots [first, top], or from a list at `first`. Every
   argument is left as a string on the stack while the call copies it. */
#define SMALL_ARGS 16
typedef struct small_argv {
    const char *argv[SMALL_ARGS];
    size_t lens[SMALL_ARGS];
    char nums[SMALL_ARGS][32];   /* numbers as text, for the first SMALL_ARGS arguments */
} small_argv;

/* An integer in decimal, at the end of buf[32]; returns where it starts. */
static char *format_int(char *buf, long long v, size_t *len)
{
    char *e = buf + 31, *d = e;
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    *e = '\0';
    do { *--d = (char)('0' + u % 10); u /= 10; } while (u);
    if (v < 0) *--d = '-';
    *len = (size_t)(e - d);
    return d;
}
static int read_argv(lua_State *L, int first, small_argv *small, const char ***argv_out, size_t **lens_out)
{
    int top = lua_gettop(L), argc, i, from_table = lua_istable(L, first);
    const char **argv;
    size_t *lens;
    if (from_table) {
        lua_getfield(L, first, "n");
        argc = lua_isinteger(L, -1) ? (int)lua_tointeger(L, -1) : (int)lua_rawlen(L, first);
        lua_pop(L, 1);
    } else {
        argc = top - first + 1;
    }
    if (argc < 1) usage_error(L, DBP_EUSAGE, "a command needs at least its name");
    if (argc <= SMALL_ARGS) {
        argv = small->argv;
        lens = small->lens;
    } else {
        argv = (const char **)lua_newuserdatauv(L, sizeof(char *) * (size_t)argc, 0);
        lens = (size_t *)lua_newuserdatauv(L, sizeof(size_t) * (size_t)argc, 0);
    }
    luaL_checkstack(L, argc + 8, "too many command arguments");
    for (i = 0; i < argc; i++) {
        int t;
        if (from_table) lua_rawgeti(L, first, i + 1); else lua_pushvalue(L, first + i);
        t = lua_type(L, -1);
        if (t == LUA_TNUMBER && i < SMALL_ARGS && argv == small->argv) {
            /* integers exactly, floats with every digit, as text in C memory
               (no Lua string made for them) */
            if (lua_isinteger(L, -1)) {
                argv[i] = format_int(small->nums[i], (long long)lua_tointeger(L, -1), &lens[i]);
            } else {
                double d = lua_tonumber(L, -1);
                if (d != d || d - d != 0) usage_error(L, DBP_EPARAM, "argument %d is not a finite number", i + 1);
                snprintf(small->nums[i], sizeof small->nums[i], "%.17g", d);
                argv[i] = small->nums[i];
                lens[i] = strlen(small->nums[i]);
            }
            lua_pop(L, 1);
            continue;
        }
        if (t == LUA_TNUMBER) {
            /* integers exactly; floats with every digit */
            if (lua_isinteger(L, -1)) {
                lua_pushfstring(L, "%I", (LUAI_UACINT)lua_tointeger(L, -1));
            } else {
                char num[64];
                double d = lua_tonumber(L, -1);
                if (d != d || d - d != 0) usage_error(L, DBP_EPARAM, "argument %d is not a finite number", i + 1);
                snprintf(num, sizeof num, "%.17g", d);
                lua_pushstring(L, num);
            }
            lua_remove(L, -2);
        } else if (t != LUA_TSTRING) {
            usage_error(L, DBP_EPARAM, "argument %d is a %s: commands take strings and numbers", i + 1, lua_typename(L, t));
        }
        argv[i] = lua_tolstring(L, -1, &lens[i]);
    }
    *argv_out = argv;
    *lens_out = lens;
    return argc;
}

/* A batch's promise and its C side, before any of its ops is submitted
   (what may raise is done): returns the lop, the promise on top. */
static lop *new_batch(lua_State *L, lhub *h, lpool *lp, int n, int backend)
{
    lop *o;
    dbp_op **kids;
    lua_createtable(L, 0, 4);                    /* the promise */
    lua_rawgeti(L, LUA_REGISTRYINDEX, h->promise_mt);
    lua_setmetatable(L, -2);
    push_key(L, h, K_STATE);
    push_key(L, h, K_PENDING);
    lua_rawset(L, -3);
    o = get_light_op(L, h);
    if (!o) luaL_error(L, "dbpool: out of memory");
    kids = (dbp_op **)calloc((size_t)(n ? n : 1), sizeof *kids);
    if (!kids) {
        o->next_ready = h->free_lops;
        h->free_lops = o;
        luaL_error(L, "dbpool: out of memory");
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, h->inflight);
    lua_pushvalue(L, -2);
    lua_rawseti(L, -2, o->slot);
    lua_pop(L, 1);
    o->ref = 0;
    o->op = NULL;
    o->h = h;
    o->pool = lp;
    o->backend = backend;
    o->light = 1;
    o->queued = 0;
    o->kids = kids;
    o->nkids = n;
    o->left = n + 1;                             /* + 1 until every op is submitted */
    o->live_prev = NULL;
    o->live_next = h->live;
    if (h->live) h->live->live_prev = o;
    h->live = o;
    return o;
}

/* Every op submitted: the guard off (ready at once when all settled already). */
static void batch_submitted(lop *o)
{
    if (--o->left == 0) op_ready(NULL, o);
}

/* pool:query_many(sql, list_of_params [, opts]) -> promise of the list of
   results: one statement run with each params table of the list, over the
   pool's connections, one promise for all (an error object in the place of
   a query that failed). Every params table is checked before anything is
   sent. */
static int l_wrap_query_many(lua_State *L)
{
    lpool *lp;
    size_t len;
    const char *sql;
    dbp_op_options o;
    int n, i, top;
    size_t want;
    dbp_value *vals;
    lop *b;
    lp = wrapped_pool(L, "query_many: call it as pool:query_many(sql, list)");
    if (lp->backend != BK_MYSQL) usage_error(L, DBP_EUSAGE, "query_many() needs a MySQL pool; use call_many() for Redis");
    if (lua_type(L, 2) != LUA_TSTRING) usage_error(L, DBP_EUSAGE, "query_many: the SQL must be a string");
    sql = lua_tolstring(L, 2, &len);
    if (!lua_istable(L, 3)) usage_error(L, DBP_EUSAGE, "query_many: expected a list of parameter lists");
    lua_settop(L, 4);
    read_op_options(L, 4, &o);
    n = (int)lua_rawlen(L, 3);
    want = dbp_sql_count_params(sql, len);
    /* every item read (and checked) first, into one array: nothing is sent on a usage error */
    if (want && (size_t)n > ((size_t)-1 / sizeof(dbp_value)) / want) luaL_error(L, "dbpool: query_many: too many parameters");
    vals = want && n ? (dbp_value *)lua_newuserdatauv(L, sizeof(dbp_value) * want * (size_t)n, 0) : NULL;
    top = lua_gettop(L);
    for (i = 1; i <= n; i++) {
        size_t np;
        lua_rawgeti(L, 3, i);
        if (!lua_istable(L, -1)) usage_error(L, DBP_EPARAM, "query_many: item %d is not a list of parameters", i);
        np = count_params(L, top + 1);
        if (np != want) {
            dbp_value small[SMALL_PARAMS];
            read_params(L, top + 1, small, &np);     /* (a bad value is the error it was before the count) */
            usage_error(L, DBP_EPARAM, "query_many: item %d has %lu parameter%s, the statement %lu placeholder%s", i,
                        (unsigned long)np, np == 1 ? "" : "s", (unsigned long)want, want == 1 ? "" : "s");
        }
        if (np) convert_params(L, top + 1, vals + (size_t)(i - 1) * want, np);   /* strings kept alive by the list */
        lua_settop(L, top);
    }
    b = new_batch(L, lp->h, lp, n, BK_MYSQL);
    for (i = 0; i < n; i++) {
        dbp_op *op = dbp_pool_queryn(lp->p, sql, len, want ? vals + (size_t)i * want : NULL, want, &o);
        if (!op) { b->left -= n - i; break; } /* out of memory: the rest never runs (and never settles) */
        b->kids[i] = op;
        dbp_op_on_settle(op, kid_ready, b);
    }
    batch_submitted(b);
    return 1;
}

/* A batch that raised before anything was sent: its C side back to the free list. */
static void batch_abort(lua_State *L, lhub *h, lop *o)
{
    lua_rawgeti(L, LUA_REGISTRYINDEX, h->inflight);
    lua_pushboolean(L, 0);
    lua_rawseti(L, -2, o->slot);                 /* (an existing slot: no allocation) */
    lua_pop(L, 1);
    free_light_op(h, o);
}

#define BATCH_FAIL(call) do { batch_abort(L, lp->h, bt); call; } while (0)

/* Room for the commands' start indices and one more argument; 0 when out of memory. */
static int batch_argv_room(batch_argv *b, int ncmds)
{
    if (b->capcmds < ncmds + 1) {
        int *p = (int *)realloc(b->start, sizeof(int) * ((size_t)ncmds + 1));
        if (!p) return 0;
        b->start = p;
        b->capcmds = ncmds + 1;
    }
    if (b->nargs == b->cap) {
        int cap = b->cap ? b->cap * 2 : 1024;
        const char **a;
        size_t *l;
        if (cap < b->cap) return 0;
        a = (const char **)realloc((void *)b->argv, sizeof(char *) * (size_t)cap);
        if (!a) return 0;
        b->argv = a;
        l = (size_t *)realloc(b->lens, sizeof(size_t) * (size_t)cap);
        if (!l) return 0;
        b->lens = l;
        b->cap = cap;
    }
    return 1;
}

/* A number argument as text in nums (integers exactly, floats with every
   digit); its argv entry stays NULL until every number is written. Returns
   0 when it is not finite, -1 when out of memory. */
static int batch_argv_number(lua_State *L, batch_argv *b)
{
    char tmp[32], *d;
    size_t len;
    if (lua_isinteger(L, -1)) {
        d = format_int(tmp, (long long)lua_tointeger(L, -1), &len);
    } else {
        double x = lua_tonumber(L, -1);
        if (x != x || x - x != 0) return 0;
        snprintf(tmp, sizeof tmp, "%.17g", x);
        d = tmp;
        len = strlen(tmp);
    }
    if (b->nnums + len > b->capnums) {
        size_t cap = b->capnums ? b->capnums * 2 : 4096;
        char *p;
        while (cap < b->nnums + len) cap *= 2;
        p = (char *)realloc(b->nums, cap);
        if (!p) return -1;
        b->nums = p;
        b->capnums = cap;
    }
    memcpy(b->nums + b->nnums, d, len);
    b->nnums += len;
    b->argv[b->nargs] = NULL;
    b->lens[b->nargs] = len;
    return 1;
}

/* pool:call_many({ {cmd, args...}, ... } [, opts]) -> promise of the list
   of replies (an error object in the place of a command that failed): the
   commands go out pipelined, one promise for all. Every command is read
   (and checked) before any is sent; a command's n, like its arguments, is
   read raw. */
static int l_wrap_call_many(lua_State *L)
{
    lpool *lp;
    dbp_op_options o;
    int n, i, top, keyn;
    batch_argv *b;
    lop *bt;
    lp = wrapped_pool(L, "call_many: call it as pool:call_many(commands)");
    if (lp->backend != BK_REDIS) usage_error(L, DBP_EUSAGE, "call_many() needs a Redis pool; use query_many() for SQL");
    if (!lua_istable(L, 2)) usage_error(L, DBP_EUSAGE, "call_many: expected a list of commands");
    lua_settop(L, 3);
    read_op_options(L, 3, &o);
    n = (int)lua_rawlen(L, 2);
    push_key(L, lp->h, K_N);
    keyn = lua_gettop(L);
    bt = new_batch(L, lp->h, lp, n, BK_REDIS);  /* the promise, on top */
    lua_insert(L, keyn);                         /* (below "n") */
    keyn++;
    top = lua_gettop(L);
    b = &lp->h->bargv;
    b->nargs = 0;
    b->nnums = 0;
    if (!batch_argv_room(b, n)) BATCH_FAIL(luaL_error(L, "dbpool: out of memory"));
    for (i = 1; i <= n; i++) {
        int argc, j, item = top + 1;
        lua_rawgeti(L, 2, i);
        if (!lua_istable(L, item)) BATCH_FAIL(usage_error(L, DBP_EPARAM, "call_many: item %d is not a command (a list)", i));
        lua_pushvalue(L, keyn);
        if (lua_rawget(L, item) == LUA_TNUMBER && lua_isinteger(L, -1)) argc = (int)lua_tointeger(L, -1);
        else argc = (int)lua_rawlen(L, item);
        lua_settop(L, item);
        if (argc < 1) BATCH_FAIL(usage_error(L, DBP_EUSAGE, "call_many: item %d: a command needs at least its name", i));
        b->start[i - 1] = b->nargs;
        for (j = 1; j <= argc; j++) {
            int t = lua_rawgeti(L, item, j);
            if (b->nargs == b->cap && !batch_argv_room(b, n)) BATCH_FAIL(luaL_error(L, "dbpool: out of memory"));
            if (t == LUA_TSTRING) {
                b->argv[b->nargs] = lua_tolstring(L, -1, &b->lens[b->nargs]);   /* kept alive by the command table */
            } else if (t == LUA_TNUMBER) {
                int r = batch_argv_number(L, b);
                if (r == 0) BATCH_FAIL(usage_error(L, DBP_EPARAM, "call_many: item %d: argument %d is not a finite number", i, j));
                if (r < 0) BATCH_FAIL(luaL_error(L, "dbpool: out of memory"));
            } else {
                BATCH_FAIL(usage_error(L, DBP_EPARAM, "call_many: item %d: argument %d is a %s: commands take strings and numbers",
                                       i, j, lua_typename(L, t)));
            }
            b->nargs++;
            lua_settop(L, item);
        }
        lua_settop(L, top);
    }
    b->start[n] = b->nargs;
    if (b->nnums) {                              /* the numbers' text, in the order they were written */
        size_t at = 0;
        for (i = 0; i < b->nargs; i++)
            if (!b->argv[i]) { b->argv[i] = b->nums + at; at += b->lens[i]; }
    }
    for (i = 0; i < n; i++) {
        dbp_op *op = dbp_pool_call(lp->p, b->start[i + 1] - b->start[i], b->argv + b->start[i], b->lens + b->start[i], &o);
        if (!op) { bt->left -= n - i; break; }
        bt->kids[i] = op;
        dbp_op_on_settle(op, kid_ready, bt);
    }
    batch_submitted(bt);
    lua_settop(L, keyn - 1);                     /* the promise */
    return 1;
}

/* pool:call(name, ...) or pool:call({name, ...}, opts) -> promise */
static int pool_call(lua_State *L, lpool *lp)
{
    small_argv small;
    const char **argv;
    size_t *lens;
    dbp_op_options o;
    int argc;
    dbp_op *op;
    memset(&o, 0, sizeof o);
    if (lp->backend != BK_REDIS) usage_error(L, DBP_EUSAGE, "call() needs a Redis pool; use query() for SQL");
    if (lua_istable(L, 2)) {
        read_op_options(L, 3, &o);
        lua_settop(L, 2);
    }
    argc = read_argv(L, 2, &small, &argv, &lens);
    op = dbp_pool_call(lp->p, argc, argv, lens, &o);
    raise_if_usage(L, op);
    new_light_op(L, lp->h, lp, op, BK_REDIS);
    return 1;
}
static int l_pool_call(lua_State *L) { return pool_call(L, check_pool(L, 1)); }

static int l_pool_ping(lua_State *L)
{
    lpool *lp = check_pool(L, 1);
    dbp_op_options o;
    dbp_op *op;
    read_op_options(L, 2, &o);
    op = dbp_pool_ping(lp->p, &o);
    new_op(L, lp->h, lp, op, 0);
    return 1;
}

/* pool:close(timeout_seconds_or_nil) -> promise */
static int l_pool_close(lua_State *L)
{
    lpool *lp = (lpool *)luaL_checkudata(L, 1, POOL_MT);
    int ms = -1;
    if (!lp->p) usage_error(L, DBP_ECLOSED, "the pool is closed and released");
    if (!lua_isnoneornil(L, 2)) {
        double s = luaL_checknumber(L, 2);
        ms = s <= 0 ? 0 : (int)(s * 1000.0 + 0.5);
    }
    new_op(L, lp->h, lp, dbp_pool_close(lp->p, ms), 0);
    return 1;
}

static void set_int(lua_State *L, const char *k, long long v) { lua_pushinteger(L, (lua_Integer)v); lua_setfield(L, -2, k); }
static void set_secs(lua_State *L, const char *k, long long us) { lua_pushnumber(L, (double)us / 1e6); lua_setfield(L, -2, k); }

static void push_stats(lua_State *L, const dbp_stats *st)
{
    lua_createtable(L, 0, 32);
    set_int(L, "total", st->total); set_int(L, "idle", st->idle); set_int(L, "busy", st->busy);
    set_int(L, "connecting", st->connecting); set_int(L, "pinned", st->pinned); set_int(L, "waiting", st->waiting);
    set_int(L, "max", st->max);
    set_int(L, "ops", (long long)st->ops); set_int(L, "fulfilled", (long long)st->fulfilled);
    set_int(L, "rejected", (long long)st->rejected);
    set_int(L, "created", (long long)st->created); set_int(L, "closed", (long long)st->closed);
    set_int(L, "closed_idle", (long long)st->closed_idle); set_int(L, "closed_lifetime", (long long)st->closed_lifetime);
    set_int(L, "closed_error", (long long)st->closed_error); set_int(L, "closed_close", (long long)st->closed_close);
    set_int(L, "closed_dead", (long long)st->closed_dead);
    set_int(L, "errors", (long long)st->errors); set_int(L, "timeouts", (long long)st->timeouts);
    set_int(L, "retried", (long long)st->retried); set_int(L, "lost", (long long)st->lost);
    set_int(L, "connect_failures", (long long)st->connect_failures);
    set_secs(L, "wait_p50", st->wait_p50_us); set_secs(L, "wait_p99", st->wait_p99_us); set_secs(L, "wait_max", st->wait_max_us);
    set_secs(L, "run_p50", st->run_p50_us); set_secs(L, "run_p99", st->run_p99_us); set_secs(L, "run_max", st->run_max_us);
    if (st->server_wait_timeout >= 0) set_int(L, "server_wait_timeout", st->server_wait_timeout);
    if (st->server_max_connections >= 0) set_int(L, "server_max_connections", st->server_max_connections);
    if (st->server_max_user_connections >= 0) set_int(L, "server_max_user_connections", st->server_max_user_connections);
}

static int l_pool_stats(lua_State *L)
{
    lpool *lp = check_pool(L, 1);
    dbp_stats st;
    dbp_pool_stats(lp->p, &st);
    push_stats(L, &st);
    return 1;
}

static int l_pool_nodes(lua_State *L)
{
    lpool *lp = check_pool(L, 1);
    dbp_node_info info[64];
    int n = dbp_pool_nodes(lp->p, info, 64), i;
    lua_createtable(L, n, 0);
    for (i = 0; i < n && i < 64; i++) {
        lua_createtable(L, 0, 6);
        lua_pushstring(L, info[i].addr); lua_setfield(L, -2, "addr");
        lua_pushstring(L, info[i].primary ? "primary" : "replica"); lua_setfield(L, -2, "role");
        set_int(L, "slots", info[i].slots);
        set_int(L, "slot_ranges", info[i].slot_ranges);
        if (!info[i].primary) { lua_pushstring(L, info[i].primary_addr); lua_setfield(L, -2, "primary"); }
        if (info[i].state[0]) {
            /* MySQL replicas: where it stands, and what was sent there */
            lua_pushstring(L, info[i].state); lua_setfield(L, -2, "state");
            if (info[i].lag >= 0) set_int(L, "lag", info[i].lag);
            set_int(L, "routed", (long long)info[i].routed);
            if (info[i].last_error[0]) { lua_pushstring(L, info[i].last_error); lua_setfield(L, -2, "error"); }
        }
        push_stats(L, &info[i].stats);
        lua_setfield(L, -2, "stats");
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

static int l_pool_describe(lua_State *L)
{
    lpool *lp = (lpool *)luaL_checkudata(L, 1, POOL_MT);
    char buf[200];
    if (!lp->p) { lua_pushliteral(L, "(closed)"); return 1; }
    dbp_pool_describe(lp->p, buf, sizeof buf);
    lua_pushstring(L, buf);
    lua_pushstring(L, dbp_pool_backend(lp->p));
    lua_pushstring(L, dbp_pool_server_version(lp->p));
    return 3;
}

/* pool:listen(event_name): Lua has a handler for it */
static int l_pool_listen(lua_State *L)
{
    lpool *lp = check_pool(L, 1);
    const char *name = luaL_checkstring(L, 2);
    if (strcmp(name, "connect") == 0) lp->events |= 1u << DBP_EVENT_CONNECT;
    else if (strcmp(name, "enqueue") == 0) lp->events |= 1u << DBP_EVENT_ENQUEUE;
    else if (strcmp(name, "slow") == 0) lp->events |= 1u << DBP_EVENT_SLOW;
    else if (strcmp(name, "error") == 0) lp->events |= 1u << DBP_EVENT_ERROR;
    else if (strcmp(name, "notice") == 0) lp->events |= 1u << DBP_EVENT_NOTICE;
    return 0;
}

/* pool:closed() -> true once close finished (or the pool was released) */
static int l_pool_state(lua_State *L)
{
    lpool *lp = (lpool *)luaL_checkudata(L, 1, POOL_MT);
    if (!lp->p) lua_pushliteral(L, "released");
    else {
        dbp_pool_state st = dbp_pool_get_state(lp->p);
        lua_pushstring(L, st == DBP_POOL_OPEN ? "open" : st == DBP_POOL_CLOSING ? "closing" : "closed");
    }
    return 1;
}

/* ---- pinned connections ------------------------------------------------------ */

static int l_pool_acquire(lua_State *L)
{
    lpool *lp = check_pool(L, 1);
    dbp_op_options o;
    read_op_options(L, 2, &o);
    new_op(L, lp->h, lp, dbp_pool_acquire(lp->p, &o), 0);
    return 1;
}

/* core.take_conn(promise_op) -> conn userdata (after an acquire fulfilled) */
static int l_take_conn(lua_State *L)
{
    lop *o = check_op(L, 1);
    dbp_conn *c;
    /* the userdata first (it may raise): only then take the connection,
       which nothing could give back if the allocation failed after it */
    lconn *lc = (lconn *)lua_newuserdatauv(L, sizeof *lc, 1);
    memset(lc, 0, sizeof *lc);
    luaL_setmetatable(L, CONN_MT);
    c = dbp_op_take_conn(o->op);
    if (!c) usage_error(L, DBP_EUSAGE, "no connection to take");
    lc->c = c;
    lc->h = o->h;
    lc->pool = o->pool;
    lc->backend = o->pool ? o->pool->backend : 0;
    lc->next = o->h->conns;
    o->h->conns = lc;
    return 1;
}

static lconn *check_conn(lua_State *L, int i)
{
    lconn *lc = (lconn *)luaL_checkudata(L, i, CONN_MT);
    if (!lc->c) usage_error(L, DBP_EUSAGE, "the pinned connection was released");
    return lc;
}

static int l_conn_query(lua_State *L)
{
    lconn *lc = check_conn(L, 1);
    size_t n;
    const char *sql = luaL_checkstring(L, 2);
    dbp_value small[SMALL_PARAMS];
    dbp_value *v = read_params(L, 3, small, &n);
    dbp_op_options o;
    dbp_op *op;
    read_op_options(L, 4, &o);
    if (lc->backend != BK_MYSQL) usage_error(L, DBP_EUSAGE, "query() needs a MySQL or PostgreSQL connection; use call() for Redis");
    op = dbp_conn_query(lc->c, sql, v, n, &o);
    raise_if_usage(L, op);
    new_light_op(L, lc->h, lc->pool, op, BK_MYSQL);
    return 1;
}

static int l_conn_call(lua_State *L)
{
    lconn *lc = check_conn(L, 1);
    small_argv small;
    const char **argv;
    size_t *lens;
    dbp_op_options o;
    int argc;
    dbp_op *op;
    memset(&o, 0, sizeof o);
    if (lc->backend != BK_REDIS) usage_error(L, DBP_EUSAGE, "call() needs a Redis connection");
    if (lua_istable(L, 2)) { read_op_options(L, 3, &o); lua_settop(L, 2); }
    argc = read_argv(L, 2, &small, &argv, &lens);
    op = dbp_conn_call(lc->c, argc, argv, lens, &o);
    raise_if_usage(L, op);
    new_light_op(L, lc->h, lc->pool, op, BK_REDIS);
    return 1;
}

static void conn_unlist(lconn *lc)
{
    lconn **pp;
    if (!lc->h) return;
    for (pp = &lc->h->conns; *pp; pp = &(*pp)->next) if (*pp == lc) { *pp = lc->next; break; }
}

/* conn:release() / conn:discard(); idempotent */
static int conn_end(lua_State *L, int discard)
{
    lconn *lc = (lconn *)luaL_checkudata(L, 1, CONN_MT);
    if (lc->c && lc->h && !lc->h->closed) {
        if (discard) dbp_conn_discard(lc->c); else dbp_conn_release(lc->c);
    }
    lc->c = NULL;
    conn_unlist(lc);
    return 0;
}
static int l_conn_release(lua_State *L) { return conn_end(L, 0); }
static int l_conn_discard(lua_State *L) { return conn_end(L, 1); }

/* conn:in_transaction() -> whether a MySQL transaction or Redis MULTI is open */
static int l_conn_busy_state(lua_State *L)
{
    lconn *lc = check_conn(L, 1);
    lua_pushboolean(L, (dbp_conn_session(lc->c) & DBP_SESSION_TRANSACTION) != 0);
    return 1;
}

/* conn:set_where(traceback): kept for the leak report */
static int l_conn_set_where(lua_State *L)
{
    luaL_checkudata(L, 1, CONN_MT);
    luaL_checkstring(L, 2);
    lua_settop(L, 2);
    lua_setiuservalue(L, 1, 1);
    return 0;
}

static int l_conn_ok(lua_State *L)
{
    lconn *lc = (lconn *)luaL_checkudata(L, 1, CONN_MT);
    lua_pushboolean(L, lc->c && dbp_conn_ok(lc->c));
    return 1;
}

static int l_conn_id(lua_State *L)
{
    lconn *lc = check_conn(L, 1);
    lua_pushinteger(L, (lua_Integer)dbp_conn_server_id(lc->c));
    return 1;
}

/* __gc: a pinned connection nobody released. Lua reports the leak (it knows
   where it was acquired); here it goes back, or is discarded mid-transaction. */
static int l_conn_gc(lua_State *L)
{
    lconn *lc = (lconn *)luaL_checkudata(L, 1, CONN_MT);
    if (lc->c && lc->h && !lc->h->closed) {
        int in_tx = (dbp_conn_session(lc->c) & DBP_SESSION_CHANGED) != 0;
        if (lc->pool && lc->pool->p) {
            /* reported through the pool's error hook, with where it was acquired */
            lmsg *m = (lmsg *)calloc(1, sizeof *m);
            const char *where = NULL;
            char msg[256];
            size_t wn = 0;
            if (lua_getiuservalue(L, 1, 1) == LUA_TSTRING) where = lua_tolstring(L, -1, &wn);
            snprintf(msg, sizeof msg, "a pinned connection was garbage-collected without release(); %s",
                     in_tx ? "it was in a transaction and is discarded" : "it went back to the pool");
            if (m) {
                m->pool = lc->pool;
                m->type = -1;
                m->n1 = strlen(msg);
                m->s1 = copy_bytes(msg, m->n1);
                if (where) m->s2 = copy_bytes(where, m->n2 = wn);
                msg_push(lc->h, m);
            }
            lua_pop(L, 1);
        }
        if (in_tx) dbp_conn_discard(lc->c); else dbp_conn_release(lc->c);
    }
    lc->c = NULL;
    conn_unlist(lc);
    return 0;
}

/* ---- pub/sub --------------------------------------------------------------------- */

static int l_pool_subscribe(lua_State *L)
{
    lpool *lp = check_pool(L, 1);
    int nch, npat, i;
    const char **ch, **pat;
    dbp_error e;
    lsub *ls;
    luaL_checktype(L, 2, LUA_TTABLE);
    luaL_checktype(L, 3, LUA_TTABLE);
    if (lp->backend != BK_REDIS && strcmp(dbp_pool_backend(lp->p), "postgres") != 0)
        usage_error(L, DBP_EUSAGE, "subscribe() needs a Redis or PostgreSQL pool");
    nch = (int)lua_rawlen(L, 2);
    npat = (int)lua_rawlen(L, 3);
    ch = (const char **)lua_newuserdatauv(L, sizeof(char *) * (size_t)(nch + 1), 0);
    pat = (const char **)lua_newuserdatauv(L, sizeof(char *) * (size_t)(npat + 1), 0);
    for (i = 0; i < nch; i++) {
        lua_rawgeti(L, 2, i + 1);
        if (!lua_isstring(L, -1)) usage_error(L, DBP_EUSAGE, "channel %d is not a string", i + 1);
        ch[i] = lua_tostring(L, -1);
        lua_pop(L, 1); /* kept alive by the caller's table */
    }
    for (i = 0; i < npat; i++) {
        lua_rawgeti(L, 3, i + 1);
        if (!lua_isstring(L, -1)) usage_error(L, DBP_EUSAGE, "pattern %d is not a string", i + 1);
        pat[i] = lua_tostring(L, -1);
        lua_pop(L, 1);
    }
    ls = (lsub *)lua_newuserdatauv(L, sizeof *ls, 1);
    memset(ls, 0, sizeof *ls);
    luaL_setmetatable(L, SUB_MT);
    ls->s = dbp_pool_subscribe(lp->p, nch, ch, npat, pat, sub_message, ls, &e);
    if (!ls->s) { push_error(L, &e); return lua_error(L); }
    ls->h = lp->h;
    ls->pool = lp;
    ls->next = lp->h->subs;
    lp->h->subs = ls;
    return 1;
}

static void sub_unlist(lsub *ls)
{
    lsub **pp;
    if (!ls->h) return;
    for (pp = &ls->h->subs; *pp; pp = &(*pp)->next) if (*pp == ls) { *pp = ls->next; break; }
    {
        lmsg *m;
        for (m = ls->h->msg_head; m; m = m->next) if (m->sub == ls) m->sub = NULL;
    }
}

static int l_sub_close(lua_State *L)
{
    lsub *ls = (lsub *)luaL_checkudata(L, 1, SUB_MT);
    if (ls->s && ls->h && !ls->h->closed) dbp_sub_free(ls->s);
    ls->s = NULL;
    sub_unlist(ls);
    return 0;
}

/* sub:id() -> the key its messages carry */
static int l_sub_id(lua_State *L)
{
    lsub *ls = (lsub *)luaL_checkudata(L, 1, SUB_MT);
    lua_pushlightuserdata(L, ls);
    return 1;
}

static int l_sub_reconnects(lua_State *L)
{
    lsub *ls = (lsub *)luaL_checkudata(L, 1, SUB_MT);
    lua_pushinteger(L, ls->s ? dbp_sub_reconnects(ls->s) : 0);
    return 1;
}

/* ---- the hub --------------------------------------------------------------------- */

static void free_msgs(lhub *h)
{
    while (h->msg_head) {
        lmsg *m = h->msg_head;
        h->msg_head = m->next;
        free(m->s1); free(m->s2); free(m->s3); free(m);
    }
    h->msg_tail = NULL;
    h->nmsgs = 0;
}

static const char *event_name(int t)
{
    switch (t) {
    case DBP_EVENT_CONNECT: return "connect";
    case DBP_EVENT_ENQUEUE: return "enqueue";
    case DBP_EVENT_SLOW: return "slow";
    case DBP_EVENT_NOTICE: return "notice";
    case -1: return "leak";
    default: return "error";
    }
}

static const char *msg_name(int t)
{
    switch (t) {
    case DBP_MSG_MESSAGE: return "message";
    case DBP_MSG_PMESSAGE: return "pmessage";
    case DBP_MSG_SUBSCRIBED: return "subscribed";
    case DBP_MSG_RESUBSCRIBED: return "resubscribed";
    default: return "error";
    }
}

/* Pushes the settled promises Lua must look at (and events, messages)
   gathered so far, and how many ops settled in all: a fulfilled light op
   that nobody waits on is settled here and not listed. */
static int deliver(lua_State *L, lhub *h)
{
    int n = 0, count = 0, all = 0, inflight;
    lop *o;
    /* sized once: growing it by doubling every step was a malloc hot spot */
    for (o = h->ready_head; o; o = o->next_ready) count++;
    lua_rawgeti(L, LUA_REGISTRYINDEX, h->inflight);
    inflight = lua_gettop(L);
    /* the list is made when a first promise goes in it: most steps have none
       (a promise nobody waits on is not listed), and get the shared empty one */
    while (h->ready_head) {
        lop *o = h->ready_head;
        h->ready_head = o->next_ready;
        if (!h->ready_head) h->ready_tail = NULL;
        o->queued = 0;
        if (o->light) {
            int pi;
            lua_rawgeti(L, inflight, o->slot);          /* its promise */
            pi = lua_gettop(L);
            if (o->kids ? o->left == 0 : (o->op && dbp_op_state(o->op) >= DBP_OP_FULFILLED)) {
                int fulfilled = o->kids || dbp_op_state(o->op) == DBP_OP_FULFILLED;
                if (o->kids) settle_batch(L, o, pi); else settle_promise(L, o, pi);
                lua_pushboolean(L, 0);
                lua_rawseti(L, inflight, o->slot);
                free_light_op(h, o);                     /* Lua has all it needs */
                all++;
                /* nobody waits on a fulfilled promise: Lua has nothing to do for it */
                if (fulfilled) {
                    push_key(L, h, K_WAITERS);
                    if (lua_rawget(L, pi) == LUA_TNIL) {
                        push_key(L, h, K_SWAIT);
                        if (lua_rawget(L, pi) == LUA_TNIL) { lua_settop(L, pi - 1); continue; }
                    }
                    lua_settop(L, pi);
                }
            }
            if (!n) { lua_createtable(L, count, 0); lua_insert(L, -2); }
            lua_rawseti(L, -2, ++n);
            continue;
        }
        if (o->ref == LUA_NOREF) continue;
        if (!n) lua_createtable(L, count, 0);
        lua_rawgeti(L, LUA_REGISTRYINDEX, o->ref);      /* the op userdata */
        lua_getiuservalue(L, -1, 1);                     /* its promise */
        if (o->op && dbp_op_state(o->op) >= DBP_OP_FULFILLED) {
            settle_promise(L, o, lua_gettop(L));
            luaL_unref(L, LUA_REGISTRYINDEX, o->ref);
            o->ref = LUA_NOREF;
            all++;
            /* converted: the C copy (a MYSQL_RES holds 8 KiB) need not wait for the GC */
            dbp_result_free(dbp_op_take_result(o->op));
            dbp_reply_free(dbp_op_take_reply(o->op));
        }
        lua_rawseti(L, -3, ++n);
        lua_pop(L, 1);
    }
    if (!n) lua_rawgeti(L, LUA_REGISTRYINDEX, h->empty);   /* (never written to: Lua only reads it) */
    if (h->msg_head) {
        int k = 0;
        lua_newtable(L);
        while (h->msg_head) {
            lmsg *m = h->msg_head;
            h->msg_head = m->next;
            if (!h->msg_head) h->msg_tail = NULL;
            h->nmsgs--;
            if (m->is_message ? (m->sub != NULL) : (m->pool != NULL)) {
                lua_createtable(L, 0, 6);
                if (m->is_message) {
                    lua_pushlightuserdata(L, m->sub); lua_setfield(L, -2, "sub");
                    lua_pushstring(L, msg_name(m->type)); lua_setfield(L, -2, "type");
                    lua_pushlstring(L, m->s1, m->n1); lua_setfield(L, -2, "channel");
                    lua_pushlstring(L, m->s2, m->n2); lua_setfield(L, -2, "message");
                    if (m->s3) { lua_pushlstring(L, m->s3, m->n3); lua_setfield(L, -2, "pattern"); }
                } else {
                    lua_getfield(L, LUA_REGISTRYINDEX, POOLS_KEY);
                    lua_rawgetp(L, -1, m->pool);
                    lua_setfield(L, -3, "pool");
                    lua_pop(L, 1);
                    lua_pushstring(L, event_name(m->type)); lua_setfield(L, -2, "event");
                    lua_pushlstring(L, m->s1, m->n1); lua_setfield(L, -2, "message");
                    if (m->duration_us) { lua_pushnumber(L, (double)m->duration_us / 1e6); lua_setfield(L, -2, "duration"); }
                    if (m->conn_id) { lua_pushinteger(L, m->conn_id); lua_setfield(L, -2, "conn"); }
                    if (m->has_err) { push_error(L, &m->err); lua_setfield(L, -2, "error"); }
                    if (m->s2) { lua_pushlstring(L, m->s2, m->n2); lua_setfield(L, -2, "where"); }
                }
                lua_rawseti(L, -2, ++k);
            }
            free(m->s1); free(m->s2); free(m->s3); free(m);
        }
    } else {
        lua_pushnil(L);
    }
    lua_pushinteger(L, all);
    return 3;
}

/* core.step(timeout_seconds) -> promises to wake, events|nil, ops settled */
static int l_step(lua_State *L)
{
    lhub *h = get_hub(L);
    double t = luaL_optnumber(L, 1, -1);
    int ms = t < 0 ? -1 : (int)(t * 1000.0 + 0.5);
    if (!h->ready_head && !h->msg_head) {
        int rc = dbp_hub_step(h->hub, ms);
        if (rc < 0 && rc != DBP_PENDING) return usage_error(L, rc, "the hub failed: %s", dbp_rc_string(rc));
    }
    return deliver(L, h);
}

static int l_pending(lua_State *L)
{
    lhub *h = get_hub(L);
    lua_pushinteger(L, dbp_hub_pending(h->hub));
    lua_pushboolean(L, h->ready_head != NULL || h->msg_head != NULL);
    return 2;
}

/* core.sleep(seconds) -> promise */
static int l_sleep(lua_State *L)
{
    lhub *h = get_hub(L);
    double s = luaL_checknumber(L, 1);
    int ms = s <= 0 ? 0 : (s > 2e9 / 1000 ? 2000000000 : (int)(s * 1000.0 + 0.5));
    new_op(L, h, NULL, dbp_hub_sleep(h->hub, ms), 0);
    return 1;
}

static int l_now(lua_State *L)
{
    lua_pushnumber(L, (double)dbp_clock_us() / 1e6);
    return 1;
}

/* core.hub_stats() -> { ops =, ops_released =, pending =, pools =, ... }:
   the hub's live objects (dbp_hub_stats), for leak checks */
static int l_hub_stats(lua_State *L)
{
    lhub *h = get_hub(L);
    dbp_hub_counts k;
    dbp_hub_stats(h->hub, &k);
    lua_createtable(L, 0, 8);
#define SET(f) (lua_pushinteger(L, k.f), lua_setfield(L, -2, #f))
    SET(ops); SET(ops_released); SET(pending); SET(pools); SET(pools_released);
    SET(conns); SET(conns_dead_held); SET(conns_buried);
#undef SET
    return 1;
}

static int l_redact(lua_State *L)
{
    const char *url = luaL_checkstring(L, 1);
    char buf[1024];
    dbp_url_redact(url, buf, sizeof buf);
    lua_pushstring(L, buf);
    return 1;
}

static int l_parse_url(lua_State *L)
{
    const char *url = luaL_checkstring(L, 1);
    dbp_url u;
    dbp_error e;
    int i;
    if (dbp_url_parse(url, &u, &e) != DBP_OK) { lua_pushnil(L); push_error(L, &e); return 2; }
    lua_createtable(L, 0, 6);
    lua_pushstring(L, u.scheme); lua_setfield(L, -2, "scheme");
    if (u.user) { lua_pushstring(L, u.user); lua_setfield(L, -2, "user"); }
    if (u.database) { lua_pushstring(L, u.database); lua_setfield(L, -2, "database"); }
    lua_pushboolean(L, u.password != NULL); lua_setfield(L, -2, "has_password");
    lua_createtable(L, u.nhosts, 0);
    for (i = 0; i < u.nhosts; i++) {
        lua_pushfstring(L, "%s:%d", u.hosts[i].host, u.hosts[i].port);
        lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, "hosts");
    dbp_url_free(&u);
    return 1;
}

/* Closes the hub: drives pending ops to settlement (bounded by each pool's
   close_timeout), then frees everything. Runs at lua_close, or by hand. */
static void hub_shutdown(lhub *h)
{
    lpool *lp;
    lconn *lc;
    lsub *ls;
    if (h->closed) return;
    h->closed = 1;
    /* ops already settled or queued for Lua: nobody will look now */
    while (h->ready_head) {
        lop *o = h->ready_head;
        h->ready_head = o->next_ready;
        o->queued = 0;
    }
    h->ready_tail = NULL;
    for (lp = h->pools; lp; lp = lp->next) if (lp->p) dbp_pool_set_hook(lp->p, NULL, NULL);
    dbp_hub_free(h->hub, -1);
    h->hub = NULL;
    /* light ops Lua never saw settle: their C ops go now (their promises stay pending) */
    while (h->live) free_light_op(h, h->live);
    while (h->free_lops) { lop *o = h->free_lops; h->free_lops = o->next_ready; free(o); }
    {
        int j;
        for (j = 0; j < COLCACHE; j++) { free(h->cc[j].key); h->cc[j].key = NULL; }
    }
    free((void *)h->bargv.argv);
    free(h->bargv.lens);
    free(h->bargv.start);
    free(h->bargv.nums);
    memset(&h->bargv, 0, sizeof h->bargv);
    h->ready_head = h->ready_tail = NULL;
    for (lp = h->pools; lp; lp = lp->next) { lp->p = NULL; lp->h = NULL; }
    for (lc = h->conns; lc; lc = lc->next) { lc->c = NULL; lc->h = NULL; }
    for (ls = h->subs; ls; ls = ls->next) { ls->s = NULL; ls->h = NULL; }
    h->pools = NULL; h->conns = NULL; h->subs = NULL;
    free_msgs(h);
    if (h->sigfd >= 0) {
        close(h->sigfd);
        h->sigfd = -1;
        if (sig_pipe_w >= 0) { close(sig_pipe_w); sig_pipe_w = -1; }
    }
}

static int l_hub_gc(lua_State *L)
{
    lhub *h = (lhub *)lua_touserdata(L, 1);
    if (h) hub_shutdown(h);
    return 0;
}

/* core.shutdown(): what lua_close does, on demand (dbpool.run's end does not need it) */
static int l_shutdown(lua_State *L)
{
    lhub *h;
    lua_getfield(L, LUA_REGISTRYINDEX, HUB_KEY);
    h = (lhub *)lua_touserdata(L, -1);
    if (h) hub_shutdown(h);
    return 0;
}

/* ---- signals, for the dbpool command ------------------------------------------------
   A handler writes the signal to a self-pipe that the hub watches, so a
   waiting poll() wakes and Lua sees the signal at its next step. The second
   signal ends the process at once from the handler itself: a script stuck
   in a loop that never yields can still be stopped.

   The two statics it uses are declared at the top of the file. */

static void on_signal(int sig)
{
    unsigned char b = (unsigned char)sig;
    int saved = errno;
    if (++sig_count >= 2 && sig_exit_on_second) _exit(128 + sig);
    if (sig_pipe_w >= 0) { ssize_t n = write(sig_pipe_w, &b, 1); (void)n; }
    errno = saved;
}

/* core.trap_signals([{ exit_on_second = bool }]) starts catching SIGINT and
   SIGTERM (a signal the process inherited as ignored stays ignored) */
static int l_trap_signals(lua_State *L)
{
    lhub *h = get_hub(L);
    struct sigaction sa, old;
    int k;
    static const int sigs[] = { SIGINT, SIGTERM };
    if (lua_istable(L, 1)) {
        lua_getfield(L, 1, "exit_on_second");
        if (!lua_isnil(L, -1)) sig_exit_on_second = lua_toboolean(L, -1);
        lua_pop(L, 1);
    }
    if (h->sigfd < 0) {
        int fds[2];
        if (pipe(fds) != 0) return luaL_error(L, "dbpool: pipe(): %s", strerror(errno));
        fcntl(fds[0], F_SETFL, O_NONBLOCK);
        fcntl(fds[1], F_SETFL, O_NONBLOCK);
        fcntl(fds[0], F_SETFD, FD_CLOEXEC);
        fcntl(fds[1], F_SETFD, FD_CLOEXEC);
        h->sigfd = fds[0];
        sig_pipe_w = fds[1];
        dbp_hub_set_wakeup_fd(h->hub, h->sigfd);
    }
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    for (k = 0; k < 2; k++) {
        if (sigaction(sigs[k], NULL, &old) == 0 && old.sa_handler == SIG_IGN) continue;
        sigaction(sigs[k], &sa, NULL);
    }
    return 0;
}

/* core.reset_signals(): the next signal counts as a first one again (the REPL, after a Ctrl-C) */
static int l_reset_signals(lua_State *L)
{
    (void)L;
    sig_count = 0;
    return 0;
}

/* core.signals() -> list of the signal names caught since the last call */
static int l_signals(lua_State *L)
{
    lhub *h = get_hub(L);
    unsigned char buf[16];
    int n = 0;
    lua_newtable(L);
    if (h->sigfd < 0) return 1;
    for (;;) {
        ssize_t r = read(h->sigfd, buf, sizeof buf), i;
        if (r <= 0) break;
        for (i = 0; i < r; i++) {
            lua_pushstring(L, buf[i] == SIGINT ? "SIGINT" : buf[i] == SIGTERM ? "SIGTERM" : "signal");
            lua_rawseti(L, -2, ++n);
        }
    }
    return 1;
}

/* core.exit_now(code): _exit for a second signal, without running finalizers */
static int l_exit_now(lua_State *L)
{
    fflush(stdout);
    fflush(stderr);
    _exit((int)luaL_optinteger(L, 1, 1));
    return 0;
}

static int l_isatty(lua_State *L)
{
    lua_pushboolean(L, isatty((int)luaL_checkinteger(L, 1)));
    return 1;
}

/* core.set_metatables(promise_mt, error_mt) - given by the Lua layer */
static int l_set_metatables(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_pushvalue(L, 1);
    lua_setfield(L, LUA_REGISTRYINDEX, PROMISE_MT_KEY);
    lua_pushvalue(L, 2);
    lua_setfield(L, LUA_REGISTRYINDEX, ERROR_MT_KEY);
    {
        lhub *h = get_hub(L);
        lua_pushvalue(L, 1);
        lua_rawseti(L, LUA_REGISTRYINDEX, h->promise_mt);
    }
    return 0;
}

static const luaL_Reg pool_methods[] = {
    { "query", l_pool_query },
    { "stream", l_pool_stream },
    { "copy_in", l_pool_copy_in },
    { "call", l_pool_call },
    { "ping", l_pool_ping },
    { "close", l_pool_close },
    { "stats", l_pool_stats },
    { "nodes", l_pool_nodes },
    { "describe", l_pool_describe },
    { "state", l_pool_state },
    { "listen", l_pool_listen },
    { "acquire", l_pool_acquire },
    { "subscribe", l_pool_subscribe },
    { NULL, NULL }
};

static const luaL_Reg conn_methods[] = {
    { "query", l_conn_query },
    { "call", l_conn_call },
    { "release", l_conn_release },
    { "discard", l_conn_discard },
    { "in_transaction", l_conn_busy_state },
    { "ok", l_conn_ok },
    { "set_where", l_conn_set_where },
    { "id", l_conn_id },
    { NULL, NULL }
};

static const luaL_Reg sub_methods[] = {
    { "close", l_sub_close },
    { "reconnects", l_sub_reconnects },
    { "id", l_sub_id },
    { NULL, NULL }
};

static const luaL_Reg core_funcs[] = {
    { "open", l_open },
    { "step", l_step },
    { "pending", l_pending },
    { "sleep", l_sleep },
    { "now", l_now },
    { "hub_stats", l_hub_stats },
    { "take_conn", l_take_conn },
    { "redact", l_redact },
    { "parse_url", l_parse_url },
    { "shutdown", l_shutdown },
    { "trap_signals", l_trap_signals },
    { "signals", l_signals },
    { "reset_signals", l_reset_signals },
    { "exit_now", l_exit_now },
    { "isatty", l_isatty },
    { "set_metatables", l_set_metatables },
    { NULL, NULL }
};

/* closures over the pool metatable and "_c" (wrapped_pool) */
static const luaL_Reg wrapper_funcs[] = {
    { "pool_query", l_wrap_query },
    { "pool_call", l_wrap_call },
    { "pool_query_many", l_wrap_query_many },
    { "pool_call_many", l_wrap_call_many },
    { NULL, NULL }
};

static void make_mt(lua_State *L, const char *name, const luaL_Reg *methods, lua_CFunction gc)
{
    luaL_newmetatable(L, name);
    lua_newtable(L);
    luaL_setfuncs(L, methods, 0);
    lua_setfield(L, -2, "__index");
    if (gc) {
        lua_pushcfunction(L, gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
}

int luaopen_dbpool_core(lua_State *L)
{
    lhub *h;
    dbp_error e;
    lua_getfield(L, LUA_REGISTRYINDEX, HUB_KEY);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        h = (lhub *)lua_newuserdatauv(L, sizeof *h, 0);
        memset(h, 0, sizeof *h);
        h->sigfd = -1;
        h->hub = dbp_hub_open(&e);
        if (!h->hub) return luaL_error(L, "dbpool: %s", e.message);
        luaL_newmetatable(L, HUB_MT);
        lua_pushcfunction(L, l_hub_gc);
        lua_setfield(L, -2, "__gc");
        lua_setmetatable(L, -2);
        lua_setfield(L, LUA_REGISTRYINDEX, HUB_KEY);
        /* the hub's finalizer must run after every pool's: it is made first */
        lua_newtable(L);
        lua_createtable(L, 0, 1);
        lua_pushliteral(L, "v");
        lua_setfield(L, -2, "__mode");
        lua_setmetatable(L, -2);
        lua_setfield(L, LUA_REGISTRYINDEX, POOLS_KEY);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        h->promise_mt = luaL_ref(L, LUA_REGISTRYINDEX);
        lua_setfield(L, LUA_REGISTRYINDEX, PROMISE_MT_KEY);
        lua_newtable(L);
        lua_setfield(L, LUA_REGISTRYINDEX, ERROR_MT_KEY);
        lua_newtable(L);
        h->inflight = luaL_ref(L, LUA_REGISTRYINDEX);
        lua_newtable(L);
        h->empty = luaL_ref(L, LUA_REGISTRYINDEX);
        {
            int k;
            for (k = 0; k < NKEYS; k++) {
                lua_pushstring(L, key_names[k]);
                h->keys[k] = luaL_ref(L, LUA_REGISTRYINDEX);
            }
        }
        {
            int j;
            for (j = 0; j < COLCACHE; j++) h->cc[j].ref = LUA_NOREF;
        }
    } else {
        lua_pop(L, 1);
    }
    make_mt(L, POOL_MT, pool_methods, l_pool_gc);
    make_mt(L, OP_MT, op_methods, l_op_gc);
    luaL_getmetatable(L, OP_MT);                /* fetch: a closure over the op metatable */
    lua_getfield(L, -1, "__index");
    lua_pushvalue(L, -2);
    lua_pushcclosure(L, l_op_fetch, 1);
    lua_setfield(L, -2, "fetch");
    lua_pop(L, 2);
    make_mt(L, CONN_MT, conn_methods, l_conn_gc);
    make_mt(L, SUB_MT, sub_methods, l_sub_close);
    luaL_newlib(L, core_funcs);
    luaL_getmetatable(L, POOL_MT);
    lua_pushliteral(L, "_c");
    luaL_setfuncs(L, wrapper_funcs, 2);
    lua_pushlightuserdata(L, NULL);
    lua_setfield(L, -2, "null");
    lua_pushliteral(L, DBPOOL_VERSION);
    lua_setfield(L, -2, "version");
    return 1;
}
