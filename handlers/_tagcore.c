/*
 * Compiled core of handlers/tagging.py: Tagger.classify in one C call (Core), and the affix
 * search for a word seen the first time (Affixes, further down).
 *
 * Why C: the issue asks for 50,000 messages/s on one core with the full rules file. The
 * pure-Python tagger (kept in tagging.py as the reference and the fallback when no
 * compiler is available) spends ~30 us per message, most of it in Python bytecode after
 * the Aho-Corasick pass. Here the whole path is C: split and lower-case, look every token
 * up in the Tagger's token -> word-id dict, walk a word-level trie of the rules' keys,
 * hide matches inside longer matches, sum weights, rank, and cut the resident's own words
 * out of the text. tests/test_tagging_core.py checks that both give identical results.
 *
 * Semantics (the same as the Python reference, stated on token spans):
 *   - a key is a sequence of canonical words; a match is a span of tokens whose word ids
 *     are the key's (tokens the rules do not know have id -1 and match nothing);
 *   - a match contained in another match is hidden ("sampah" in "bank sampah"); what is
 *     left is, per start token, the longest match, kept when it ends after every match
 *     that starts earlier;
 *   - each distinct key counts once; its terms add their weight (in thousandths) to their
 *     pillar and sub-topic;
 *   - pillars ranked by (score desc, strongest term desc, pillar index); the sub-topic of
 *     the winner by the same three keys within the pillar;
 *   - [[contexts]] rules: every key carries a 64-bit mask of the rules' word groups it
 *     stands for (its own, and those of keys inside it when it scores); a rule fires when
 *     the OR over the distinct keys has every bit of its `need` mask and none of `forbid`.
 *     A fired rule's added terms count like one more distinct key; then each sub-topic a
 *     fired rule lowers has its score, and its pillar's, cut to max(1, s * f / 1000) with
 *     f the lowest factor (in thousandths) of the fired rules lowering it. Strongest-term
 *     tie-breaks use the weights as written (added terms included, cuts not);
 *   - matched: the text of each shown match of a key scoring for the winner (or standing
 *     for a word group of a fired rule that added to the winner), text order, each
 *     distinct string once.
 *
 * Core.classify(text) returns a tuple (pillar, subtopic, score, matched, secondary),
 * None when nothing scored, NotImplemented for text with non-ASCII letters or digits (the
 * Python path handles it; emoji and curly quotes are separators here too), or a list of
 * tokens the token dict has not seen yet (the caller learns them and calls again), so no
 * Python code ever runs inside this function.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define STACK_TOKENS 256

typedef struct {
    PyObject_HEAD
    PyObject *ids;          /* dict: lower-case token -> int word id (-1: not a rules word) */
    PyObject *pillar_names; /* tuple of str, pillar index -> key */
    PyObject *sub_names;    /* tuple of str, sub-topic index -> key */
    Py_ssize_t n_words, n_states, n_keys, n_subs, n_pillars;
    int32_t *root_next;     /* word id -> state after that word from the root, or -1 */
    uint64_t *edge_keys;    /* open addressing: (state << 32 | word) + 1, 0 = empty */
    int32_t *edge_next;
    size_t edge_mask;
    int32_t *key_at;        /* state -> key index ending there, or -1 */
    int32_t *key_terms;     /* key -> first index into the term arrays; n_keys + 1 entries */
    int32_t *term_pillar, *term_sub;
    int64_t *term_weight;
    uint32_t *key_seen;     /* key -> generation it was last counted in */
    uint32_t generation;
    int64_t *sub_score, *sub_top; /* sub-topic -> score, strongest term: zero between calls */
    uint8_t *sub_used;
    int32_t *touched;
    /* [[contexts]] */
    uint64_t *key_cues;     /* key -> word groups it stands for (NULL: no contexts) */
    Py_ssize_t n_ctx;
    uint64_t *ctx_need, *ctx_forbid;
    int32_t *ctx_add, *ctx_scale; /* rule -> first index into the add / scale arrays; n_ctx + 1 entries */
    int32_t *add_pillar, *add_sub;
    int64_t *add_weight;
    int32_t *scale_pillar, *scale_sub;
    int64_t *scale_factor;
    int64_t *sub_factor;    /* sub-topic -> lowest factor of the fired rules (0: none); zero between calls */
    int64_t *sub_cut;       /* sub-topic -> what the factor took off its score */
    int32_t *scaled;        /* the sub-topics with a factor, this call */
    int32_t *sub_pillar;    /* sub-topic -> its pillar (for the sub-topics rules lower) */
} Core;

static inline uint64_t
mix(uint64_t x)
{
    /* splitmix64 finaliser: spreads (state, word) pairs over the table */
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

static inline int32_t
edge_get(const Core *c, int32_t state, int32_t word)
{
    uint64_t key = (((uint64_t)(uint32_t)state << 32) | (uint32_t)word) + 1;
    size_t i = (size_t)mix(key) & c->edge_mask;
    for (;;) {
        uint64_t k = c->edge_keys[i];
        if (k == key)
            return c->edge_next[i];
        if (k == 0)
            return -1;
        i = (i + 1) & c->edge_mask;
    }
}

static void
core_free_tables(Core *c)
{
    PyMem_Free(c->root_next);
    PyMem_Free(c->edge_keys);
    PyMem_Free(c->edge_next);
    PyMem_Free(c->key_at);
    PyMem_Free(c->key_terms);
    PyMem_Free(c->term_pillar);
    PyMem_Free(c->term_sub);
    PyMem_Free(c->term_weight);
    PyMem_Free(c->key_seen);
    PyMem_Free(c->sub_score);
    PyMem_Free(c->sub_top);
    PyMem_Free(c->sub_used);
    PyMem_Free(c->touched);
    PyMem_Free(c->key_cues);
    PyMem_Free(c->ctx_need);
    PyMem_Free(c->ctx_forbid);
    PyMem_Free(c->ctx_add);
    PyMem_Free(c->ctx_scale);
    PyMem_Free(c->add_pillar);
    PyMem_Free(c->add_sub);
    PyMem_Free(c->add_weight);
    PyMem_Free(c->scale_pillar);
    PyMem_Free(c->scale_sub);
    PyMem_Free(c->scale_factor);
    PyMem_Free(c->sub_factor);
    PyMem_Free(c->sub_cut);
    PyMem_Free(c->scaled);
    PyMem_Free(c->sub_pillar);
    c->sub_pillar = NULL;
    c->key_cues = c->ctx_need = c->ctx_forbid = NULL;
    c->ctx_add = c->ctx_scale = c->add_pillar = c->add_sub = c->scale_pillar = c->scale_sub = c->scaled = NULL;
    c->add_weight = c->scale_factor = c->sub_factor = c->sub_cut = NULL;
    c->n_ctx = 0;
    c->sub_score = c->sub_top = NULL;
    c->sub_used = NULL;
    c->touched = NULL;
    c->root_next = NULL;
    c->edge_keys = NULL;
    c->edge_next = NULL;
    c->key_at = c->key_terms = c->term_pillar = c->term_sub = NULL;
    c->term_weight = NULL;
    c->key_seen = NULL;
}

static void
Core_dealloc(Core *c)
{
    Py_XDECREF(c->ids);
    Py_XDECREF(c->pillar_names);
    Py_XDECREF(c->sub_names);
    core_free_tables(c);
    Py_TYPE(c)->tp_free((PyObject *)c);
}

static int
as_int32(PyObject *o, int32_t *out, int32_t lo, int32_t hi, const char *what)
{
    long v = PyLong_AsLong(o);
    if (v == -1 && PyErr_Occurred())
        return -1;
    if (v < lo || v > hi) {
        PyErr_Format(PyExc_ValueError, "%s out of range: %ld", what, v);
        return -1;
    }
    *out = (int32_t)v;
    return 0;
}

/* a list of (pillar, sub, int) triples into three arrays; returns the count or -1 */
static int
read_triples(Core *c, PyObject *seq, int32_t *pillar, int32_t *sub, int64_t *value, int64_t hi, const char *what)
{
    if (!PyTuple_Check(seq)) {
        PyErr_Format(PyExc_TypeError, "%s: a tuple of (pillar, sub-topic, number)", what);
        return -1;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(seq); i++) {
        PyObject *t = PyTuple_GET_ITEM(seq, i);
        if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) != 3) {
            PyErr_Format(PyExc_TypeError, "%s: (pillar, sub-topic, number) tuples", what);
            return -1;
        }
        long long v = PyLong_AsLongLong(PyTuple_GET_ITEM(t, 2));
        if (v == -1 && PyErr_Occurred())
            return -1;
        if (v < 1 || v > hi) {
            PyErr_Format(PyExc_ValueError, "%s: number out of range", what);
            return -1;
        }
        value[i] = v;
        if (as_int32(PyTuple_GET_ITEM(t, 0), &pillar[i], 0, (int32_t)c->n_pillars - 1, "pillar") < 0
            || as_int32(PyTuple_GET_ITEM(t, 1), &sub[i], 0, (int32_t)c->n_subs - 1, "sub-topic") < 0)
            return -1;
    }
    return (int)PyTuple_GET_SIZE(seq);
}

static int
read_mask(PyObject *o, uint64_t *out)
{
    unsigned long long v = PyLong_AsUnsignedLongLong(o);
    if (v == (unsigned long long)-1 && PyErr_Occurred())
        return -1;
    *out = (uint64_t)v;
    return 0;
}

/* [[contexts]]: key_cues [mask per key], contexts [(need, forbid, add, scale), ...] */
static int
core_init_contexts(Core *c, PyObject *key_cues, PyObject *contexts)
{
    if (PyList_GET_SIZE(key_cues) != c->n_keys) {
        PyErr_SetString(PyExc_ValueError, "key_cues: one mask per key");
        return -1;
    }
    Py_ssize_t n_add = 0, n_scale = 0;
    c->n_ctx = PyList_GET_SIZE(contexts);
    for (Py_ssize_t r = 0; r < c->n_ctx; r++) {
        PyObject *rule = PyList_GET_ITEM(contexts, r);
        if (!PyTuple_Check(rule) || PyTuple_GET_SIZE(rule) != 4 || !PyTuple_Check(PyTuple_GET_ITEM(rule, 2))
            || !PyTuple_Check(PyTuple_GET_ITEM(rule, 3))) {
            PyErr_SetString(PyExc_TypeError, "contexts: (need, forbid, add, scale) tuples");
            return -1;
        }
        n_add += PyTuple_GET_SIZE(PyTuple_GET_ITEM(rule, 2));
        n_scale += PyTuple_GET_SIZE(PyTuple_GET_ITEM(rule, 3));
    }
    size_t subs = c->n_subs ? (size_t)c->n_subs : 1;
    c->key_cues = PyMem_Malloc(sizeof(uint64_t) * (c->n_keys ? c->n_keys : 1));
    c->ctx_need = PyMem_Malloc(sizeof(uint64_t) * (c->n_ctx ? c->n_ctx : 1));
    c->ctx_forbid = PyMem_Malloc(sizeof(uint64_t) * (c->n_ctx ? c->n_ctx : 1));
    c->ctx_add = PyMem_Malloc(sizeof(int32_t) * (c->n_ctx + 1));
    c->ctx_scale = PyMem_Malloc(sizeof(int32_t) * (c->n_ctx + 1));
    c->add_pillar = PyMem_Malloc(sizeof(int32_t) * (n_add ? n_add : 1));
    c->add_sub = PyMem_Malloc(sizeof(int32_t) * (n_add ? n_add : 1));
    c->add_weight = PyMem_Malloc(sizeof(int64_t) * (n_add ? n_add : 1));
    c->scale_pillar = PyMem_Malloc(sizeof(int32_t) * (n_scale ? n_scale : 1));
    c->scale_sub = PyMem_Malloc(sizeof(int32_t) * (n_scale ? n_scale : 1));
    c->scale_factor = PyMem_Malloc(sizeof(int64_t) * (n_scale ? n_scale : 1));
    c->sub_factor = PyMem_Calloc(subs, sizeof(int64_t));
    c->sub_cut = PyMem_Calloc(subs, sizeof(int64_t));
    c->scaled = PyMem_Calloc(subs, sizeof(int32_t));
    c->sub_pillar = PyMem_Calloc(subs, sizeof(int32_t));
    if (!c->sub_pillar || !c->key_cues || !c->ctx_need || !c->ctx_forbid || !c->ctx_add || !c->ctx_scale || !c->add_pillar
        || !c->add_sub || !c->add_weight || !c->scale_pillar || !c->scale_sub || !c->scale_factor || !c->sub_factor
        || !c->sub_cut || !c->scaled) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t k = 0; k < c->n_keys; k++)
        if (read_mask(PyList_GET_ITEM(key_cues, k), &c->key_cues[k]) < 0)
            return -1;
    int32_t a = 0, sc = 0;
    for (Py_ssize_t r = 0; r < c->n_ctx; r++) {
        PyObject *rule = PyList_GET_ITEM(contexts, r);
        if (read_mask(PyTuple_GET_ITEM(rule, 0), &c->ctx_need[r]) < 0
            || read_mask(PyTuple_GET_ITEM(rule, 1), &c->ctx_forbid[r]) < 0)
            return -1;
        c->ctx_add[r] = a;
        c->ctx_scale[r] = sc;
        int got = read_triples(c, PyTuple_GET_ITEM(rule, 2), c->add_pillar + a, c->add_sub + a, c->add_weight + a,
                               (int64_t)1 << 40, "contexts add");
        if (got < 0)
            return -1;
        a += got;
        got = read_triples(c, PyTuple_GET_ITEM(rule, 3), c->scale_pillar + sc, c->scale_sub + sc,
                           c->scale_factor + sc, 999, "contexts scale");
        if (got < 0)
            return -1;
        for (int i = 0; i < got; i++)
            c->sub_pillar[c->scale_sub[sc + i]] = c->scale_pillar[sc + i];
        sc += got;
    }
    c->ctx_add[c->n_ctx] = a;
    c->ctx_scale[c->n_ctx] = sc;
    return 0;
}

/*
 * Core(ids, n_words, edges, key_at, keys, pillar_names, sub_names, key_cues=[], contexts=[])
 *   ids: the dict looked up per token (shared with the Tagger, which fills it)
 *   edges: [(state, word, next), ...]; state 0 is the root
 *   key_at: [key index or -1 per state]
 *   keys: [((pillar, sub, weight), ...) per key]
 *   key_cues, contexts: the [[contexts]] rules (see the top of this file); empty: none
 */
static int
Core_init(Core *c, PyObject *args, PyObject *kwds)
{
    PyObject *ids, *edges, *key_at, *keys, *pillar_names, *sub_names, *key_cues = NULL, *contexts = NULL;
    Py_ssize_t n_words;
    static char *kwlist[] = {"ids",          "n_words",   "edges",    "key_at",   "keys",
                             "pillar_names", "sub_names", "key_cues", "contexts", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!nO!O!O!O!O!|O!O!", kwlist, &PyDict_Type, &ids, &n_words,
                                     &PyList_Type, &edges, &PyList_Type, &key_at, &PyList_Type, &keys,
                                     &PyTuple_Type, &pillar_names, &PyTuple_Type, &sub_names, &PyList_Type,
                                     &key_cues, &PyList_Type, &contexts))
        return -1;
    if (n_words < 0 || n_words > INT32_MAX || PyList_GET_SIZE(key_at) < 1 || PyList_GET_SIZE(key_at) > INT32_MAX
        || PyList_GET_SIZE(keys) > INT32_MAX || PyTuple_GET_SIZE(pillar_names) > 64) {
        PyErr_SetString(PyExc_ValueError, "rules tables out of range");
        return -1;
    }
    core_free_tables(c);
    Py_INCREF(ids);
    Py_XSETREF(c->ids, ids);
    Py_INCREF(pillar_names);
    Py_XSETREF(c->pillar_names, pillar_names);
    Py_INCREF(sub_names);
    Py_XSETREF(c->sub_names, sub_names);
    c->n_words = n_words;
    c->n_states = PyList_GET_SIZE(key_at);
    c->n_keys = PyList_GET_SIZE(keys);
    c->n_subs = PyTuple_GET_SIZE(sub_names);
    c->n_pillars = PyTuple_GET_SIZE(pillar_names);
    c->generation = 0;

    Py_ssize_t n_edges = PyList_GET_SIZE(edges);
    size_t cap = 16;
    while (cap < (size_t)n_edges * 2 + 16)
        cap <<= 1;
    c->edge_mask = cap - 1;
    Py_ssize_t n_terms = 0;
    for (Py_ssize_t k = 0; k < c->n_keys; k++) {
        PyObject *terms = PyList_GET_ITEM(keys, k);
        if (!PyTuple_Check(terms)) {
            PyErr_SetString(PyExc_TypeError, "keys: a tuple of terms per key");
            return -1;
        }
        n_terms += PyTuple_GET_SIZE(terms);
    }
    c->root_next = PyMem_Malloc(sizeof(int32_t) * (n_words ? n_words : 1));
    c->edge_keys = PyMem_Calloc(cap, sizeof(uint64_t));
    c->edge_next = PyMem_Malloc(sizeof(int32_t) * cap);
    c->key_at = PyMem_Malloc(sizeof(int32_t) * c->n_states);
    c->key_terms = PyMem_Malloc(sizeof(int32_t) * (c->n_keys + 1));
    c->term_pillar = PyMem_Malloc(sizeof(int32_t) * (n_terms ? n_terms : 1));
    c->term_sub = PyMem_Malloc(sizeof(int32_t) * (n_terms ? n_terms : 1));
    c->term_weight = PyMem_Malloc(sizeof(int64_t) * (n_terms ? n_terms : 1));
    c->key_seen = PyMem_Calloc(c->n_keys ? c->n_keys : 1, sizeof(uint32_t));
    c->sub_score = PyMem_Calloc(c->n_subs ? c->n_subs : 1, sizeof(int64_t));
    c->sub_top = PyMem_Calloc(c->n_subs ? c->n_subs : 1, sizeof(int64_t));
    c->sub_used = PyMem_Calloc(c->n_subs ? c->n_subs : 1, sizeof(uint8_t));
    c->touched = PyMem_Calloc(c->n_subs ? c->n_subs : 1, sizeof(int32_t));
    if (!c->root_next || !c->edge_keys || !c->edge_next || !c->key_at || !c->key_terms || !c->term_pillar
        || !c->term_sub || !c->term_weight || !c->key_seen
        || !c->sub_score || !c->sub_top || !c->sub_used || !c->touched) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t w = 0; w < n_words; w++)
        c->root_next[w] = -1;
    for (Py_ssize_t i = 0; i < n_edges; i++) {
        PyObject *e = PyList_GET_ITEM(edges, i);
        int32_t state, word, next;
        if (!PyTuple_Check(e) || PyTuple_GET_SIZE(e) != 3) {
            PyErr_SetString(PyExc_TypeError, "edges: (state, word, next) tuples");
            return -1;
        }
        if (as_int32(PyTuple_GET_ITEM(e, 0), &state, 0, (int32_t)c->n_states - 1, "edge state") < 0
            || as_int32(PyTuple_GET_ITEM(e, 1), &word, 0, (int32_t)n_words - 1, "edge word") < 0
            || as_int32(PyTuple_GET_ITEM(e, 2), &next, 1, (int32_t)c->n_states - 1, "edge target") < 0)
            return -1;
        if (state == 0) {
            c->root_next[word] = next;
            continue;
        }
        uint64_t key = (((uint64_t)(uint32_t)state << 32) | (uint32_t)word) + 1;
        size_t j = (size_t)mix(key) & c->edge_mask;
        while (c->edge_keys[j] != 0 && c->edge_keys[j] != key)
            j = (j + 1) & c->edge_mask;
        c->edge_keys[j] = key;
        c->edge_next[j] = next;
    }
    for (Py_ssize_t s = 0; s < c->n_states; s++)
        if (as_int32(PyList_GET_ITEM(key_at, s), &c->key_at[s], -1, (int32_t)c->n_keys - 1, "key_at") < 0)
            return -1;
    int32_t t = 0;
    for (Py_ssize_t k = 0; k < c->n_keys; k++) {
        PyObject *terms = PyList_GET_ITEM(keys, k);
        c->key_terms[k] = t;
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(terms); i++, t++) {
            PyObject *term = PyTuple_GET_ITEM(terms, i);
            if (!PyTuple_Check(term) || PyTuple_GET_SIZE(term) != 3) {
                PyErr_SetString(PyExc_TypeError, "terms: (pillar, sub-topic, weight) tuples");
                return -1;
            }
            long long w = PyLong_AsLongLong(PyTuple_GET_ITEM(term, 2));
            if (w == -1 && PyErr_Occurred())
                return -1;
            if (w < 0 || w > ((long long)1 << 40)) {
                PyErr_SetString(PyExc_ValueError, "term weight out of range");
                return -1;
            }
            c->term_weight[t] = w;
            if (as_int32(PyTuple_GET_ITEM(term, 0), &c->term_pillar[t], 0, (int32_t)c->n_pillars - 1, "pillar") < 0
                || as_int32(PyTuple_GET_ITEM(term, 1), &c->term_sub[t], 0, (int32_t)c->n_subs - 1, "sub-topic") < 0)
                return -1;
        }
    }
    c->key_terms[c->n_keys] = t;
    if (contexts && PyList_GET_SIZE(contexts) > 0) {
        if (!key_cues || PyList_GET_SIZE(contexts) > 64) {
            PyErr_SetString(PyExc_ValueError, "contexts: at most 64 rules, and key_cues with them");
            return -1;
        }
        return core_init_contexts(c, key_cues, contexts);
    }
    return 0;
}

typedef struct {
    int32_t first, last, key;
} Match;

static int
rank_before(int64_t score_a, int64_t top_a, Py_ssize_t a, int64_t score_b, int64_t top_b, Py_ssize_t b)
{
    if (score_a != score_b)
        return score_a > score_b;
    if (top_a != top_b)
        return top_a > top_b;
    return a < b;
}

/* a term (or a rule's added weight) of the winner counts for its sub-topic */
static inline void
sub_add(Core *c, int32_t sub, int64_t w, Py_ssize_t *n_touched)
{
    if (!c->sub_used[sub]) {
        c->sub_used[sub] = 1;
        c->touched[(*n_touched)++] = sub;
    }
    c->sub_score[sub] += w;
    if (w > c->sub_top[sub])
        c->sub_top[sub] = w;
}

static PyObject *
Core_classify(Core *c, PyObject *text)
{
    if (!PyUnicode_Check(text)) {
        PyErr_SetString(PyExc_TypeError, "text must be str");
        return NULL;
    }
    Py_ssize_t len = PyUnicode_GET_LENGTH(text);
    if (len > INT32_MAX / 2)
        Py_RETURN_NOTIMPLEMENTED;
    const int kind = PyUnicode_KIND(text);
    const void *data = PyUnicode_DATA(text);
    if (!PyUnicode_IS_ASCII(text)) {
        /* Emoji, curly quotes and the like are separators, as in the Python path; a
         * non-ASCII letter or digit, or a character lower() would change, is left to it. */
        for (Py_ssize_t i = 0; i < len; i++) {
            Py_UCS4 ch = PyUnicode_READ(kind, data, i);
            if (ch > 127 && (Py_UNICODE_ISALNUM(ch) || Py_UNICODE_TOLOWER(ch) != ch))
                Py_RETURN_NOTIMPLEMENTED;
        }
    }

    int32_t stack_buf[STACK_TOKENS * 3];
    Match stack_matches[STACK_TOKENS];
    int32_t *buf = stack_buf;
    Match *matches = stack_matches;
    PyObject *result = NULL, *missing = NULL;
    int32_t fired[64]; /* [[contexts]] rules that fired */
    Py_ssize_t n_fired = 0, n_scaled = 0;
    /* worst case: one token per two characters */
    Py_ssize_t cap = len / 2 + 1;
    if (cap > STACK_TOKENS) {
        buf = PyMem_Malloc(sizeof(int32_t) * 3 * cap);
        matches = PyMem_Malloc(sizeof(Match) * cap);
        if (!buf || !matches) {
            PyErr_NoMemory();
            goto done;
        }
    }
    int32_t *starts = buf, *ends = buf + cap, *ids = buf + 2 * cap;

    /* 1. tokens: runs of ASCII letters and digits, lower-cased; their word ids */
    Py_ssize_t n = 0;
    for (Py_ssize_t i = 0; i < len;) {
        Py_UCS4 ch = PyUnicode_READ(kind, data, i);
        int alnum = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');
        if (!alnum) {
            i++;
            continue;
        }
        Py_ssize_t j = i;
        while (j < len) {
            ch = PyUnicode_READ(kind, data, j);
            if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9')))
                break;
            j++;
        }
        Py_ssize_t wl = j - i;
        PyObject *tok = PyUnicode_New(wl, 127);
        if (!tok)
            goto done;
        unsigned char *d = PyUnicode_1BYTE_DATA(tok);
        for (Py_ssize_t k = 0; k < wl; k++) {
            ch = PyUnicode_READ(kind, data, i + k);
            d[k] = (ch >= 'A' && ch <= 'Z') ? (unsigned char)(ch + 32) : ch;
        }
        PyObject *id = PyDict_GetItemWithError(c->ids, tok); /* borrowed */
        int32_t wid = -1;
        if (id == NULL) {
            if (PyErr_Occurred()) {
                Py_DECREF(tok);
                goto done;
            }
            if (!missing && !(missing = PyList_New(0))) {
                Py_DECREF(tok);
                goto done;
            }
            if (PyList_Append(missing, tok) < 0) {
                Py_DECREF(tok);
                goto done;
            }
        } else {
            long v = PyLong_AsLong(id);
            if (v == -1 && PyErr_Occurred()) {
                Py_DECREF(tok);
                goto done;
            }
            wid = (v >= 0 && v < c->n_words) ? (int32_t)v : -1;
        }
        Py_DECREF(tok);
        starts[n] = (int32_t)i;
        ends[n] = (int32_t)j;
        ids[n] = wid;
        n++;
        i = j;
    }
    if (missing) {
        result = missing;
        missing = NULL;
        goto done;
    }
    if (n == 0) {
        result = Py_NewRef(Py_None);
        goto done;
    }

    /* 2. shown matches: per start, the longest key; hidden when inside an earlier one */
    Py_ssize_t m = 0;
    int32_t reach = -1;
    for (int32_t i = 0; i < n; i++) {
        int32_t w = ids[i];
        if (w < 0)
            continue;
        int32_t st = c->root_next[w];
        if (st < 0)
            continue;
        int32_t best = -1, best_last = -1;
        for (int32_t j = i;;) {
            if (c->key_at[st] >= 0) {
                best = c->key_at[st];
                best_last = j;
            }
            if (++j >= n || ids[j] < 0)
                break;
            st = edge_get(c, st, ids[j]);
            if (st < 0)
                break;
        }
        if (best >= 0 && best_last > reach) {
            matches[m].first = i;
            matches[m].last = best_last;
            matches[m].key = best;
            m++;
            reach = best_last;
        }
    }
    if (m == 0) {
        result = Py_NewRef(Py_None);
        goto done;
    }

    /* 3. scores: each distinct key once (the shown matches are reused as the list) */
    int64_t pscore[64] = {0}, ptop[64] = {0};
    uint64_t pmask = 0;
    if (++c->generation == 0) { /* wrapped: forget every old mark */
        memset(c->key_seen, 0, sizeof(uint32_t) * (c->n_keys ? c->n_keys : 1));
        c->generation = 1;
    }
    uint32_t gen = c->generation;
    Py_ssize_t n_distinct = 0;
    int32_t *distinct = ids; /* the word ids are not needed any more */
    for (Py_ssize_t k = 0; k < m; k++) {
        int32_t key = matches[k].key;
        if (c->key_seen[key] == gen)
            continue;
        c->key_seen[key] = gen;
        distinct[n_distinct++] = key;
        for (int32_t t = c->key_terms[key]; t < c->key_terms[key + 1]; t++) {
            int32_t p = c->term_pillar[t];
            int64_t w = c->term_weight[t];
            pscore[p] += w;
            if (w > ptop[p])
                ptop[p] = w;
            pmask |= (uint64_t)1 << p;
        }
    }
    /* 3b. [[contexts]]: the rules whose word groups are all here (and no forbidding one) */
    if (c->n_ctx) {
        uint64_t cues = 0;
        for (Py_ssize_t k = 0; k < n_distinct; k++)
            cues |= c->key_cues[distinct[k]];
        for (Py_ssize_t r = 0; cues && r < c->n_ctx; r++) {
            if ((cues & c->ctx_need[r]) != c->ctx_need[r] || (cues & c->ctx_forbid[r]))
                continue;
            fired[n_fired++] = (int32_t)r;
            for (int32_t a = c->ctx_add[r]; a < c->ctx_add[r + 1]; a++) {
                int32_t p = c->add_pillar[a];
                int64_t w = c->add_weight[a];
                pscore[p] += w;
                if (w > ptop[p])
                    ptop[p] = w;
                pmask |= (uint64_t)1 << p;
            }
            for (int32_t x = c->ctx_scale[r]; x < c->ctx_scale[r + 1]; x++) {
                int32_t sub = c->scale_sub[x];
                if (!c->sub_factor[sub])
                    c->scaled[n_scaled++] = sub;
                if (!c->sub_factor[sub] || c->scale_factor[x] < c->sub_factor[sub])
                    c->sub_factor[sub] = c->scale_factor[x];
            }
        }
        /* a lowered sub-topic: its score now (terms and added weights), cut to the factor */
        for (Py_ssize_t x = 0; x < n_scaled; x++) {
            int32_t sub = c->scaled[x];
            int64_t sc = 0;
            for (Py_ssize_t k = 0; k < n_distinct; k++) {
                int32_t key = distinct[k];
                for (int32_t t = c->key_terms[key]; t < c->key_terms[key + 1]; t++)
                    if (c->term_sub[t] == sub)
                        sc += c->term_weight[t];
            }
            for (Py_ssize_t f = 0; f < n_fired; f++)
                for (int32_t a = c->ctx_add[fired[f]]; a < c->ctx_add[fired[f] + 1]; a++)
                    if (c->add_sub[a] == sub)
                        sc += c->add_weight[a];
            if (sc > 0) {
                int64_t kept = sc * c->sub_factor[sub] / 1000;
                c->sub_cut[sub] = sc - (kept < 1 ? 1 : kept);
                pscore[c->sub_pillar[sub]] -= c->sub_cut[sub];
            }
        }
    }
    if (!pmask) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    /* pillars in rank order (insertion sort: there are six) */
    Py_ssize_t order[64], n_ranked = 0;
    for (Py_ssize_t p = 0; p < c->n_pillars; p++) {
        if (!(pmask >> p & 1))
            continue;
        Py_ssize_t at = n_ranked++;
        while (at > 0 && rank_before(pscore[p], ptop[p], p, pscore[order[at - 1]], ptop[order[at - 1]], order[at - 1])) {
            order[at] = order[at - 1];
            at--;
        }
        order[at] = p;
    }
    int32_t win = (int32_t)order[0];

    /* 4. sub-topic of the winner, from the same distinct keys; the per-Core score arrays
     *    are only touched for the sub-topics seen and reset after */
    int32_t best_sub = -1;
    int64_t best_score = 0, best_top = 0;
    Py_ssize_t n_touched = 0;
    for (Py_ssize_t k = 0; k < n_distinct; k++) {
        int32_t key = distinct[k];
        for (int32_t t = c->key_terms[key]; t < c->key_terms[key + 1]; t++) {
            if (c->term_pillar[t] != win)
                continue;
            sub_add(c, c->term_sub[t], c->term_weight[t], &n_touched);
        }
    }
    uint64_t show = 0; /* word groups of fired rules that added to the winner: shown too */
    for (Py_ssize_t f = 0; f < n_fired; f++) {
        int32_t r = fired[f];
        for (int32_t a = c->ctx_add[r]; a < c->ctx_add[r + 1]; a++) {
            if (c->add_pillar[a] != win)
                continue;
            show |= c->ctx_need[r];
            sub_add(c, c->add_sub[a], c->add_weight[a], &n_touched);
        }
    }
    for (Py_ssize_t x = 0; x < n_scaled; x++) {
        int32_t sub = c->scaled[x];
        if (c->sub_used[sub])
            c->sub_score[sub] -= c->sub_cut[sub];
    }
    for (Py_ssize_t x = 0; x < n_touched; x++) {
        int32_t sub = c->touched[x];
        if (best_sub < 0 || rank_before(c->sub_score[sub], c->sub_top[sub], sub, best_score, best_top, best_sub)) {
            best_sub = sub;
            best_score = c->sub_score[sub];
            best_top = c->sub_top[sub];
        }
    }
    for (Py_ssize_t x = 0; x < n_touched; x++) {
        int32_t sub = c->touched[x];
        c->sub_used[sub] = 0;
        c->sub_score[sub] = c->sub_top[sub] = 0;
    }
    for (Py_ssize_t x = 0; x < n_scaled; x++)
        c->sub_factor[c->scaled[x]] = c->sub_cut[c->scaled[x]] = 0;
    n_scaled = 0;

    /* 5. the resident's own words for the winner, text order, each once */
    PyObject *matched = PyList_New(0);
    if (!matched)
        goto done;
    for (Py_ssize_t k = 0; k < m; k++) {
        int32_t key = matches[k].key, hit = show && (c->key_cues[key] & show);
        for (int32_t t = c->key_terms[key]; !hit && t < c->key_terms[key + 1]; t++)
            if (c->term_pillar[t] == win) {
                hit = 1;
                break;
            }
        if (!hit)
            continue;
        PyObject *piece = PyUnicode_Substring(text, starts[matches[k].first], ends[matches[k].last]);
        if (!piece) {
            Py_DECREF(matched);
            goto done;
        }
        int seen = PySequence_Contains(matched, piece);
        if (seen < 0 || (!seen && PyList_Append(matched, piece) < 0)) {
            Py_DECREF(piece);
            Py_DECREF(matched);
            goto done;
        }
        Py_DECREF(piece);
    }
    PyObject *matched_t = PyList_AsTuple(matched);
    Py_DECREF(matched);
    if (!matched_t)
        goto done;
    PyObject *secondary = PyTuple_New(n_ranked - 1);
    if (!secondary) {
        Py_DECREF(matched_t);
        goto done;
    }
    for (Py_ssize_t r = 1; r < n_ranked; r++)
        PyTuple_SET_ITEM(secondary, r - 1, Py_NewRef(PyTuple_GET_ITEM(c->pillar_names, order[r])));
    PyObject *score = PyFloat_FromDouble((double)pscore[win] / 1000.0);
    if (!score) {
        Py_DECREF(matched_t);
        Py_DECREF(secondary);
        goto done;
    }
    result = PyTuple_New(5);
    if (!result) {
        Py_DECREF(matched_t);
        Py_DECREF(secondary);
        Py_DECREF(score);
        goto done;
    }
    PyTuple_SET_ITEM(result, 0, Py_NewRef(PyTuple_GET_ITEM(c->pillar_names, win)));
    PyTuple_SET_ITEM(result, 1, Py_NewRef(PyTuple_GET_ITEM(c->sub_names, best_sub)));
    PyTuple_SET_ITEM(result, 2, score);
    PyTuple_SET_ITEM(result, 3, matched_t);
    PyTuple_SET_ITEM(result, 4, secondary);

done:
    for (Py_ssize_t x = 0; x < n_scaled; x++) /* left set only when nothing scored */
        c->sub_factor[c->scaled[x]] = c->sub_cut[c->scaled[x]] = 0;
    Py_XDECREF(missing);
    if (buf != stack_buf)
        PyMem_Free(buf);
    if (matches != stack_matches)
        PyMem_Free(matches);
    return result;
}

static PyMethodDef Core_methods[] = {
    {"classify", (PyCFunction)Core_classify, METH_O,
     "classify(text) -> (pillar, subtopic, score, matched, secondary) | None | NotImplemented | [new tokens]"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject CoreType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "handlers._tagcore.Core",
    .tp_basicsize = sizeof(Core),
    .tp_dealloc = (destructor)Core_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Compiled rules of a Tagger (see handlers/_tagcore.c).",
    .tp_methods = Core_methods,
    .tp_init = (initproc)Core_init,
    .tp_new = PyType_GenericNew,
};

/* ------------------------------------------------------------------------ Affixes
 *
 * The first root of a word that is a rules word, trying the candidates in the order of
 * tagging._affix_candidates (suffix forms, then prefixes stripped two deep, nasal sounds
 * restored). The Python generator costs ~13 us for a word seen the first time; most of
 * a message's words are, in a fresh bot or on a new corpus. Candidates are built in stack
 * buffers and looked up in a C hash table of the accepted strings, so nothing is
 * allocated per candidate. ASCII words up to MAX_WORD letters; others stay in Python.
 */
#define MAX_WORD 64
#define MAX_FORMS 256
#define MAX_AFFIX 8

typedef struct {
    char s[MAX_AFFIX + 1];
    int n;
} Piece;

typedef struct {
    Piece prefix;
    Piece restores[4];
    int n_restores;
} Prefix;

typedef struct {
    PyObject_HEAD
    /* candidate string -> canonical word (a str); open addressing on FNV-1a */
    char **keys;
    int *key_len;
    PyObject **values;
    size_t mask;
    Prefix *prefixes;
    int n_prefixes;
    Piece *suffixes, *second_suffixes;
    int n_suffixes, n_second;
} Affixes;

static inline uint64_t
fnv1a(const char *s, int n)
{
    uint64_t h = 1469598103934665603ULL;
    for (int i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ULL;
    }
    return h;
}

static PyObject *
affix_lookup(const Affixes *a, const char *s, int n)
{
    size_t i = (size_t)fnv1a(s, n) & a->mask;
    while (a->keys[i]) {
        if (a->key_len[i] == n && memcmp(a->keys[i], s, n) == 0)
            return a->values[i];
        i = (i + 1) & a->mask;
    }
    return NULL;
}

static void
Affixes_dealloc(Affixes *a)
{
    if (a->keys) {
        for (size_t i = 0; i <= a->mask; i++) {
            PyMem_Free(a->keys[i]);
            Py_XDECREF(a->values[i]);
        }
    }
    PyMem_Free(a->keys);
    PyMem_Free(a->key_len);
    PyMem_Free(a->values);
    PyMem_Free(a->prefixes);
    PyMem_Free(a->suffixes);
    PyMem_Free(a->second_suffixes);
    Py_TYPE(a)->tp_free((PyObject *)a);
}

static int
to_piece(PyObject *o, Piece *p)
{
    if (!PyUnicode_Check(o) || !PyUnicode_IS_ASCII(o) || PyUnicode_GET_LENGTH(o) > MAX_AFFIX) {
        PyErr_SetString(PyExc_ValueError, "affixes: ASCII strings of at most 8 letters");
        return -1;
    }
    p->n = (int)PyUnicode_GET_LENGTH(o);
    memcpy(p->s, PyUnicode_1BYTE_DATA(o), p->n);
    p->s[p->n] = 0;
    return 0;
}

static int
to_pieces(PyObject *seq, Piece **out, int *n)
{
    if (!PyTuple_Check(seq)) {
        PyErr_SetString(PyExc_TypeError, "affixes: a tuple of strings");
        return -1;
    }
    *n = (int)PyTuple_GET_SIZE(seq);
    *out = PyMem_Calloc(*n ? *n : 1, sizeof(Piece));
    if (!*out) {
        PyErr_NoMemory();
        return -1;
    }
    for (int i = 0; i < *n; i++)
        if (to_piece(PyTuple_GET_ITEM(seq, i), &(*out)[i]) < 0)
            return -1;
    return 0;
}

/* Affixes(accepted: dict[str, str], prefixes: ((prefix, (restore, ...)), ...),
 *         suffixes: (str, ...), second_suffixes: (str, ...)) */
static int
Affixes_init(Affixes *a, PyObject *args, PyObject *kwds)
{
    PyObject *accepted, *prefixes, *suffixes, *second;
    static char *kwlist[] = {"accepted", "prefixes", "suffixes", "second_suffixes", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!O!O!O!", kwlist, &PyDict_Type, &accepted, &PyTuple_Type,
                                     &prefixes, &PyTuple_Type, &suffixes, &PyTuple_Type, &second))
        return -1;
    if (a->keys) {
        PyErr_SetString(PyExc_RuntimeError, "Affixes is initialised once");
        return -1;
    }
    size_t cap = 16;
    while (cap < (size_t)PyDict_GET_SIZE(accepted) * 2 + 16)
        cap <<= 1;
    a->mask = cap - 1;
    a->keys = PyMem_Calloc(cap, sizeof(char *));
    a->key_len = PyMem_Calloc(cap, sizeof(int));
    a->values = PyMem_Calloc(cap, sizeof(PyObject *));
    if (!a->keys || !a->key_len || !a->values) {
        PyErr_NoMemory();
        return -1;
    }
    Py_ssize_t pos = 0;
    PyObject *k, *v;
    while (PyDict_Next(accepted, &pos, &k, &v)) {
        if (!PyUnicode_Check(k) || !PyUnicode_Check(v)) {
            PyErr_SetString(PyExc_TypeError, "accepted: str -> str");
            return -1;
        }
        if (!PyUnicode_IS_ASCII(k) || PyUnicode_GET_LENGTH(k) > MAX_WORD)
            continue; /* never a candidate of an ASCII word this short */
        int n = (int)PyUnicode_GET_LENGTH(k);
        const char *s = (const char *)PyUnicode_1BYTE_DATA(k);
        size_t i = (size_t)fnv1a(s, n) & a->mask;
        while (a->keys[i])
            i = (i + 1) & a->mask;
        a->keys[i] = PyMem_Malloc(n ? n : 1);
        if (!a->keys[i]) {
            PyErr_NoMemory();
            return -1;
        }
        memcpy(a->keys[i], s, n);
        a->key_len[i] = n;
        a->values[i] = Py_NewRef(v);
    }
    a->n_prefixes = (int)PyTuple_GET_SIZE(prefixes);
    a->prefixes = PyMem_Calloc(a->n_prefixes ? a->n_prefixes : 1, sizeof(Prefix));
    if (!a->prefixes) {
        PyErr_NoMemory();
        return -1;
    }
    for (int i = 0; i < a->n_prefixes; i++) {
        PyObject *item = PyTuple_GET_ITEM(prefixes, i);
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2 || !PyTuple_Check(PyTuple_GET_ITEM(item, 1))
            || PyTuple_GET_SIZE(PyTuple_GET_ITEM(item, 1)) > 4) {
            PyErr_SetString(PyExc_TypeError, "prefixes: (prefix, (restore, ...)) with up to 4 restores");
            return -1;
        }
        PyObject *restores = PyTuple_GET_ITEM(item, 1);
        if (to_piece(PyTuple_GET_ITEM(item, 0), &a->prefixes[i].prefix) < 0)
            return -1;
        a->prefixes[i].n_restores = (int)PyTuple_GET_SIZE(restores);
        for (int r = 0; r < a->prefixes[i].n_restores; r++)
            if (to_piece(PyTuple_GET_ITEM(restores, r), &a->prefixes[i].restores[r]) < 0)
                return -1;
    }
    if (to_pieces(suffixes, &a->suffixes, &a->n_suffixes) < 0
        || to_pieces(second, &a->second_suffixes, &a->n_second) < 0)
        return -1;
    return 0;
}

static inline int
ends_with(const char *s, int n, const Piece *p)
{
    return n >= p->n && memcmp(s + n - p->n, p->s, p->n) == 0;
}

/* _strip_prefixes(word, depth), stopping at the first accepted candidate */
static PyObject *
strip_prefixes(const Affixes *a, const char *w, int n, int depth)
{
    if (depth == 0)
        return NULL;
    for (int i = 0; i < a->n_prefixes; i++) {
        const Prefix *p = &a->prefixes[i];
        if (n < p->prefix.n || memcmp(w, p->prefix.s, p->prefix.n) != 0 || n - p->prefix.n < 3)
            continue;
        const char *rest = w + p->prefix.n;
        int rn = n - p->prefix.n;
        for (int r = 0; r < p->n_restores; r++) {
            char buf[MAX_WORD + MAX_AFFIX + 1];
            const Piece *restore = &p->restores[r];
            int bn = restore->n + rn;
            if (bn > MAX_WORD + MAX_AFFIX)
                continue; /* a restore longer than its prefix, twice: not in our rules */
            memcpy(buf, restore->s, restore->n);
            memcpy(buf + restore->n, rest, rn);
            PyObject *found = affix_lookup(a, buf, bn);
            if (found)
                return found;
            if ((found = strip_prefixes(a, buf, bn, depth - 1)))
                return found;
        }
    }
    return NULL;
}

static PyObject *
Affixes_first(Affixes *a, PyObject *word)
{
    if (!PyUnicode_Check(word) || !PyUnicode_IS_ASCII(word) || PyUnicode_GET_LENGTH(word) > MAX_WORD)
        Py_RETURN_NOTIMPLEMENTED;
    const char *w = (const char *)PyUnicode_1BYTE_DATA(word);
    int n = (int)PyUnicode_GET_LENGTH(word);
    /* suffix forms, in the generator's order: the word, particles/possessives/endings
     * (with their English re-spellings), then the second suffixes of each */
    struct {
        char s[MAX_WORD + 2];
        int n;
    } forms[MAX_FORMS]; /* 17 kB of stack */
    int nf = 0;
#define ADD_FORM(src, len, extra)                                                                          \
    do {                                                                                                   \
        if (nf < MAX_FORMS) {                                                                              \
            memcpy(forms[nf].s, (src), (len));                                                             \
            forms[nf].n = (len);                                                                           \
            if (extra)                                                                                     \
                forms[nf].s[forms[nf].n++] = (char)(extra);                                                \
            nf++;                                                                                          \
        } else                                                                                             \
            overflow = 1;                                                                                  \
    } while (0)
    int overflow = 0;
    ADD_FORM(w, n, 0);
    for (int i = 0; i < a->n_suffixes; i++) {
        const Piece *suf = &a->suffixes[i];
        if (!ends_with(w, n, suf) || n - suf->n < 3)
            continue;
        int bn = n - suf->n;
        ADD_FORM(w, bn, 0);
        int ing_ed = strcmp(suf->s, "ing") == 0 || strcmp(suf->s, "ed") == 0;
        if (strcmp(suf->s, "ies") == 0)
            ADD_FORM(w, bn, 'y');
        if (ing_ed && bn > 3 && w[bn - 1] == w[bn - 2])
            ADD_FORM(w, bn - 1, 0); /* "dropped" -> "drop" */
        if (ing_ed)
            ADD_FORM(w, bn, 'e'); /* "closing" -> "close" */
    }
    int first_pass = nf;
    for (int f = 0; f < first_pass; f++) {
        for (int i = 0; i < a->n_second; i++) {
            const Piece *suf = &a->second_suffixes[i];
            if (ends_with(forms[f].s, forms[f].n, suf) && forms[f].n - suf->n >= 3) {
                char tmp[MAX_WORD + 2];
                memcpy(tmp, forms[f].s, forms[f].n - suf->n);
                ADD_FORM(tmp, forms[f].n - suf->n, 0);
            }
        }
    }
#undef ADD_FORM
    if (overflow)
        Py_RETURN_NOTIMPLEMENTED;
    for (int f = 0; f < nf; f++) {
        PyObject *found = affix_lookup(a, forms[f].s, forms[f].n);
        if (found)
            return Py_NewRef(found);
    }
    for (int f = 0; f < nf; f++) {
        PyObject *found = strip_prefixes(a, forms[f].s, forms[f].n, 2);
        if (found)
            return Py_NewRef(found);
    }
    Py_RETURN_NONE;
}

static PyMethodDef Affixes_methods[] = {
    {"first", (PyCFunction)Affixes_first, METH_O,
     "first(word) -> the accepted root of the first candidate | None | NotImplemented (not ASCII, too long)"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject AffixesType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "handlers._tagcore.Affixes",
    .tp_basicsize = sizeof(Affixes),
    .tp_dealloc = (destructor)Affixes_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The affix rules of a Tagger over its accepted words (see handlers/_tagcore.c).",
    .tp_methods = Affixes_methods,
    .tp_init = (initproc)Affixes_init,
    .tp_new = PyType_GenericNew,
};

static struct PyModuleDef tagcore_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "handlers._tagcore",
    .m_doc = "Compiled core of handlers.tagging (optional; the pure-Python tagger is the reference).",
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__tagcore(void)
{
    if (PyType_Ready(&CoreType) < 0 || PyType_Ready(&AffixesType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&tagcore_module);
    if (!m)
        return NULL;
    if (PyModule_AddObjectRef(m, "Core", (PyObject *)&CoreType) < 0
        || PyModule_AddObjectRef(m, "Affixes", (PyObject *)&AffixesType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
