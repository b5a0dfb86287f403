/*
 * SPDX-License-Identifier: GPL-2.0-or-later (it includes QEMU's qemu-plugin.h); a measuring tool, not
 * part of any Papilla binary.
 * insn_sym.c - QEMU 7.2 TCG plugin (API v1): count executed guest
 * instructions per function symbol, plus a few instruction categories.
 *
 * Plain C, no glib.  Build:
 *   gcc -O2 -shared -fPIC -I include -o libinsn_sym.so insn_sym.c -lpthread
 * Use:
 *   qemu-aarch64 -plugin ./libinsn_sym.so,out=/path/out.tsv ./prog
 *
 * Counting scheme: at translation time each TB's instructions are split
 * into runs of consecutive instructions with the same symbol; one inline
 * ADD_U64 (imm = run length) is attached to the first instruction of each
 * run.  Category counts are accumulated the same way (one inline add per
 * TB per category, on the TB's first instruction).  A grand total counter
 * gets one inline add of n_insns per TB.  Inline adds are not atomic: with
 * several guest threads the counts may lose a few increments (racy, but
 * fine for --threads 1 runs).  A TB that exits early (fault, exception)
 * is counted as if it had run to its end - negligible in practice.
 *
 * Instructions without a symbol (qemu 7.2 only knows STT_FUNC symbols of
 * the main binary's .symtab: no shared libs, no NOTYPE asm labels such as
 * tract's arm64simd_* kernels) are keyed "@0xADDR" (guest address of the
 * first insn of the run); the TSV header dumps start/end/entry code and
 * the host's file mappings so summarize.py can resolve them offline.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <qemu-plugin.h>

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;

/* ---- symbol table ---- */
typedef struct Entry {
    char *name;
    uint64_t hash;
    uint64_t count;          /* target of inline adds; entry never moves */
    struct Entry *next;
} Entry;

static Entry **table;
static size_t table_size = 4096;   /* power of two */
static size_t n_entries;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

/* ---- categories ----
 * Decoded from the 32-bit A64 encoding (qemu 7.2's built-in disassembler
 * is pre-ARMv8.2: it prints FP16 vector ops and SDOT/UDOT as ".byte ...",
 * so mnemonic matching would miss exactly the interesting ones).
 */
enum {
    CAT_VFMLA,        /* FMLA/FMLS with vector destination (any type) */
    CAT_VFMLA_S,      /*   of which f32 lanes (.4s/.2s) */
    CAT_VFMLA_D,      /*   of which f64 lanes (.2d) */
    CAT_VFMLA_H,      /*   of which fp16 lanes (.8h/.4h)  [ARMv8.2 FP16] */
    CAT_VFMLA_ELEM,   /*   of which by-element form (v.s[i]) */
    CAT_FMLA_SCALAR,  /* scalar FMLA/FMLS by element (s0, s1, v2.s[1]) */
    CAT_DOT,          /* SDOT/UDOT (vector + by element) [ARMv8.2 DotProd] */
    CAT_DOT_I8MM,     /* USDOT/SUDOT [ARMv8.6 I8MM] */
    CAT_SMLAL,        /* SMLAL/SMLAL2/UMLAL/UMLAL2 (vector + by element) */
    CAT_SIMDFP,       /* any "scalar FP & Advanced SIMD data processing" */
    CAT_UNDISAS,      /* qemu's disassembler printed ".byte" (unknown op) */
    CAT_SVE,          /* any SVE encoding (op0 = 0010) */
    CAT_SVE_FMA,      /*   SVE FP multiply-accumulate (vector + indexed) */
    CAT_SVE_DOT,      /*   SVE SDOT/UDOT (vector + indexed) */
    CAT_SME,          /* any SME encoding (bit31 = 1, op0 = 0000) */
    CAT_N
};
static const char *cat_names[CAT_N] = {
    "vector_fmla_fmls",
    "vector_fmla_fmls_f32",
    "vector_fmla_fmls_f64",
    "vector_fmla_fmls_f16",
    "vector_fmla_fmls_by_element",
    "scalar_fmla_fmls_by_element",
    "sdot_udot",
    "usdot_sudot",
    "smlal_umlal",
    "simd_fp_dataproc",
    "undisassembled",
    "sve_any",
    "sve_fp_fma",
    "sve_sdot_udot",
    "sme_any",
};
static uint64_t cat_count[CAT_N];
static uint64_t grand_total;
static uint64_t tb_translations;

static const char *out_path = "insn_sym.tsv";
static FILE *dis_dump;   /* optional: dis=PATH dumps translated insns */
static uint64_t start_code, end_code;

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ULL;        /* FNV-1a */
    while (*s) {
        h ^= (unsigned char)*s++;
        h *= 1099511628211ULL;
    }
    return h;
}

static void table_grow(void)
{
    size_t nsz = table_size * 2;
    Entry **nt = calloc(nsz, sizeof(*nt));
    for (size_t i = 0; i < table_size; i++) {
        Entry *e = table[i];
        while (e) {
            Entry *nx = e->next;
            size_t b = e->hash & (nsz - 1);
            e->next = nt[b];
            nt[b] = e;
            e = nx;
        }
    }
    free(table);
    table = nt;
    table_size = nsz;
}

/* caller holds lock */
static Entry *lookup(const char *name)
{
    uint64_t h = hash_str(name);
    size_t b = h & (table_size - 1);
    for (Entry *e = table[b]; e; e = e->next) {
        if (e->hash == h && strcmp(e->name, name) == 0) {
            return e;
        }
    }
    Entry *e = calloc(1, sizeof(*e));
    e->name = strdup(name);
    e->hash = h;
    e->next = table[b];
    table[b] = e;
    if (++n_entries > table_size) {
        table_grow();
    }
    return e;
}

static void classify(uint32_t w, const char *dis, uint64_t *cats)
{
    if (((w >> 25) & 7) == 7) {
        cats[CAT_SIMDFP]++;
    }
    if ((w & 0xBF20FC00u) == 0x0E20CC00u) {           /* FMLA/FMLS vec s/d */
        cats[CAT_VFMLA]++;
        cats[(w >> 22) & 1 ? CAT_VFMLA_D : CAT_VFMLA_S]++;
    } else if ((w & 0xBF60FC00u) == 0x0E400C00u) {    /* FMLA/FMLS vec h */
        cats[CAT_VFMLA]++;
        cats[CAT_VFMLA_H]++;
    } else if ((w & 0xBF00B400u) == 0x0F001000u) {    /* FMLA/FMLS elem */
        unsigned size = (w >> 22) & 3;
        if (size != 1) {
            cats[CAT_VFMLA]++;
            cats[CAT_VFMLA_ELEM]++;
            cats[size == 0 ? CAT_VFMLA_H : size == 2 ? CAT_VFMLA_S
                                                     : CAT_VFMLA_D]++;
        }
    } else if ((w & 0xFF00B400u) == 0x5F001000u) {    /* scalar by elem */
        cats[CAT_FMLA_SCALAR]++;
    } else if ((w & 0x9FE0FC00u) == 0x0E809400u ||    /* S/UDOT vector */
               (w & 0x9FC0F400u) == 0x0F80E000u) {    /* S/UDOT elem */
        cats[CAT_DOT]++;
    } else if ((w & 0xBFE0FC00u) == 0x0E809C00u ||    /* USDOT vector */
               (w & 0xBF40F400u) == 0x0F00F000u) {    /* SUDOT/USDOT elem */
        cats[CAT_DOT_I8MM]++;
    } else if ((w & 0x9F20FC00u) == 0x0E208000u ||    /* S/UMLAL(2) vec */
               (w & 0x9F00F400u) == 0x0F002000u) {    /* S/UMLAL(2) elem */
        cats[CAT_SMLAL]++;
    }
    if (((w >> 25) & 0xF) == 2) {
        cats[CAT_SVE]++;
        if ((w & 0xFF200000u) == 0x65200000u ||
            (w & 0xFF20F800u) == 0x64200000u) {
            cats[CAT_SVE_FMA]++;
        } else if ((w & 0xFF00F800u) == 0x44000000u) {
            cats[CAT_SVE_DOT]++;
        }
    } else if ((w >> 31) && ((w >> 25) & 0xF) == 0) {
        cats[CAT_SME]++;
    }
    if (dis && strncmp(dis, ".byte", 5) == 0) {
        cats[CAT_UNDISAS]++;
    }
}

static void vcpu_tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    size_t n = qemu_plugin_tb_n_insns(tb);
    if (n == 0) {
        return;
    }
    uint64_t cats[CAT_N] = {0};

    pthread_mutex_lock(&lock);
    if (tb_translations++ == 0) {
        /* not callable from qemu_plugin_install (task not set up yet) */
        start_code = qemu_plugin_start_code();
        end_code = qemu_plugin_end_code();
    }
    struct qemu_plugin_insn *run_start = NULL;
    Entry *run_entry = NULL;
    uint64_t run_len = 0;

    for (size_t i = 0; i < n; i++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        const char *sym = qemu_plugin_insn_symbol(insn);
        Entry *e;
        if (sym && *sym) {
            e = lookup(sym);
        } else if (run_entry && run_entry->name[0] == '@') {
            e = run_entry;      /* continue the current address-keyed run */
        } else {
            /* qemu 7.2 only knows STT_FUNC symbols of the main binary;
             * key by address ("@0x...") and resolve offline against the
             * full symtab / the host maps dumped at exit. */
            char buf[32];
            snprintf(buf, sizeof(buf), "@0x%" PRIx64,
                     qemu_plugin_insn_vaddr(insn));
            e = lookup(buf);
        }
        if (e != run_entry) {
            if (run_entry) {
                qemu_plugin_register_vcpu_insn_exec_inline(
                    run_start, QEMU_PLUGIN_INLINE_ADD_U64,
                    &run_entry->count, run_len);
            }
            run_entry = e;
            run_start = insn;
            run_len = 0;
        }
        run_len++;

        char *dis = qemu_plugin_insn_disas(insn);
        if (dis) {
            if (dis_dump) {
                fprintf(dis_dump, "%" PRIx64 "\t%s\t%s\n",
                        qemu_plugin_insn_vaddr(insn), e->name, dis);
            }
        }
        uint32_t w = 0;
        if (qemu_plugin_insn_size(insn) == 4) {
            memcpy(&w, qemu_plugin_insn_data(insn), 4);   /* LE host+guest */
        }
        classify(w, dis, cats);
        free(dis);
    }
    qemu_plugin_register_vcpu_insn_exec_inline(
        run_start, QEMU_PLUGIN_INLINE_ADD_U64, &run_entry->count, run_len);
    pthread_mutex_unlock(&lock);

    qemu_plugin_register_vcpu_tb_exec_inline(
        tb, QEMU_PLUGIN_INLINE_ADD_U64, &grand_total, n);
    for (int c = 0; c < CAT_N; c++) {
        if (cats[c]) {
            qemu_plugin_register_vcpu_tb_exec_inline(
                tb, QEMU_PLUGIN_INLINE_ADD_U64, &cat_count[c], cats[c]);
        }
    }
}

static int cmp_entry(const void *a, const void *b)
{
    const Entry *x = *(Entry *const *)a, *y = *(Entry *const *)b;
    if (x->count != y->count) {
        return x->count < y->count ? 1 : -1;
    }
    return strcmp(x->name, y->name);
}

static void plugin_exit(qemu_plugin_id_t id, void *p)
{
    pthread_mutex_lock(&lock);
    if (dis_dump) {
        fflush(dis_dump);
    }
    Entry **all = malloc((n_entries + 1) * sizeof(*all));
    size_t k = 0;
    uint64_t sum = 0;
    for (size_t i = 0; i < table_size; i++) {
        for (Entry *e = table[i]; e; e = e->next) {
            all[k++] = e;
            sum += e->count;
        }
    }
    qsort(all, k, sizeof(*all), cmp_entry);

    FILE *f = fopen(out_path, "w");
    if (!f) {
        f = stderr;
    }
    fprintf(f, "# insn_sym plugin: grand_total=%" PRIu64
            " sum_of_symbols=%" PRIu64 " symbols=%zu tb_translations=%" PRIu64
            "\n", grand_total, sum, k, tb_translations);
    fprintf(f, "#category\tname\tcount\n");
    for (int c = 0; c < CAT_N; c++) {
        fprintf(f, "#category\t%s\t%" PRIu64 "\n", cat_names[c], cat_count[c]);
    }
    fprintf(f, "#total\tgrand_total\t%" PRIu64 "\n", grand_total);
    fprintf(f, "#code\tstart_code=0x%" PRIx64 "\tend_code=0x%" PRIx64
            "\tentry_code=0x%" PRIx64 "\tbinary=%s\n", start_code, end_code,
            qemu_plugin_entry_code(), qemu_plugin_path_to_binary());
    {
        /* host mappings (guest addr + guest_base) for offline resolution */
        FILE *m = fopen("/proc/self/maps", "r");
        char line[1024];
        while (m && fgets(line, sizeof(line), m)) {
            if (strchr(line, '/')) {
                fprintf(f, "#map\t%s", line);
            }
        }
        if (m) fclose(m);
    }
    fprintf(f, "symbol\tcount\n");
    for (size_t i = 0; i < k; i++) {
        if (all[i]->count) {
            fprintf(f, "%s\t%" PRIu64 "\n", all[i]->name, all[i]->count);
        }
    }
    if (f != stderr) {
        fclose(f);
    }
    free(all);
    pthread_mutex_unlock(&lock);
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id,
                                           const qemu_info_t *info,
                                           int argc, char **argv)
{
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], "out=", 4) == 0) {
            out_path = strdup(argv[i] + 4);
        } else if (strncmp(argv[i], "dis=", 4) == 0) {
            dis_dump = fopen(argv[i] + 4, "w");
        } else {
            fprintf(stderr, "insn_sym: unknown option %s\n", argv[i]);
            return -1;
        }
    }
    table = calloc(table_size, sizeof(*table));
    qemu_plugin_register_vcpu_tb_trans_cb(id, vcpu_tb_trans);
    qemu_plugin_register_atexit_cb(id, plugin_exit, NULL);
    return 0;
}
