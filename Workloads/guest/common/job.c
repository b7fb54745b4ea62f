/* Command-line parsing shared by the guest (PVH cmdline) and the native runner (argv). */
#include "hvb.h"

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

static int word_equals(const char *word, size_t length, const char *literal) {
    size_t i = 0;
    for (; i < length && literal[i]; i++)
        if (word[i] != literal[i]) return 0;
    return i == length && literal[i] == 0;
}

static const char *parse_u64(const char *text, size_t length, uint64_t *out) {
    uint64_t value = 0;
    if (length == 0) return "empty-number";
    for (size_t i = 0; i < length; i++) {
        if (text[i] < '0' || text[i] > '9') return "not-a-number";
        uint64_t digit = (uint64_t)(text[i] - '0');
        if (value > (UINT64_MAX - digit) / 10) return "number-too-large";
        value = value * 10 + digit;
    }
    *out = value;
    return 0;
}

/* "a.b.c.d" into host byte order. */
static const char *parse_ipv4(const char *text, size_t length, uint64_t *out) {
    uint64_t address = 0, part = 0;
    int parts = 0, digits = 0;
    for (size_t i = 0; i <= length; i++) {
        if (i == length || text[i] == '.') {
            if (digits == 0 || part > 255) return "bad-ipv4-address";
            address = address << 8 | part;
            parts++;
            part = 0;
            digits = 0;
        } else if (text[i] >= '0' && text[i] <= '9' && digits < 3) {
            part = part * 10 + (uint64_t)(text[i] - '0');
            digits++;
        } else {
            return "bad-ipv4-address";
        }
    }
    if (parts != 4) return "bad-ipv4-address";
    *out = address;
    return 0;
}

/* "xx:xx:xx:xx:xx:xx", hexadecimal. */
static const char *parse_mac(const char *text, size_t length, uint8_t out[6]) {
    if (length != 17) return "bad-mac-address";
    for (int i = 0; i < 6; i++) {
        uint8_t value = 0;
        for (int j = 0; j < 2; j++) {
            char c = text[i * 3 + j];
            uint8_t digit = c >= '0' && c <= '9' ? (uint8_t)(c - '0')
                            : c >= 'a' && c <= 'f' ? (uint8_t)(c - 'a' + 10)
                            : c >= 'A' && c <= 'F' ? (uint8_t)(c - 'A' + 10)
                                                   : 0xFF;
            if (digit == 0xFF) return "bad-mac-address";
            value = (uint8_t)(value << 4 | digit);
        }
        if (i < 5 && text[i * 3 + 2] != ':') return "bad-mac-address";
        out[i] = value;
    }
    return 0;
}

/* Copies a text value into a fixed field; an empty or too long value is an error. */
static const char *copy_text(const char *value, size_t length, char *field, size_t size, const char *too_long) {
    if (length == 0 || length >= size) return too_long;
    for (size_t i = 0; i < length; i++) field[i] = value[i];
    field[length] = 0;
    return 0;
}

/* A 0-or-1 flag. */
static const char *parse_flag(const char *text, size_t length, uint64_t *out, const char *not_a_flag) {
    const char *error = parse_u64(text, length, out);
    if (!error && *out > 1) error = not_a_flag;
    return error;
}

const char *hvb_parse_job(const char *cmdline, struct hvb_job *job) {
    job->bench[0] = 0;
    job->iterations = 1000;
    job->repetitions = 1;
    job->warmups = 0;
    job->size_bytes = 0;
    job->tsc_khz = 0;
    job->slowdown_percent = 0;
    job->region_sectors = 0;
    job->disk_verify = 1;
    job->inject_violation = 0;
    job->balloon = 0;
    job->udp = job->guest_ip = job->peer_ip = 0;
    job->guest_port = 40000;
    job->peer_port = 9000;
    for (int i = 0; i < 6; i++) job->peer_mac[i] = 0;
    static const uint8_t default_mac[6] = {0x02, 0x68, 0x76, 0x62, 0x00, 0x02};
    for (int i = 0; i < 6; i++) job->guest_mac[i] = default_mac[i];
    job->serve = 0;
    job->nic[0] = 0;
    job->disk[0] = 0;
    job->disk_path[0] = 0;
    job->disk_readonly = 0;
    job->loopback_peer = 0;
    const char *p = cmdline;
    while (*p) {
        while (is_space(*p)) p++;
        if (!*p) break;
        const char *word = p;
        while (*p && !is_space(*p)) p++;
        size_t length = (size_t)(p - word);
        size_t eq = 0;
        while (eq < length && word[eq] != '=') eq++;
        if (eq == length) continue; /* a bare word (e.g. a kernel flag): not ours */
        const char *value = word + eq + 1;
        size_t value_length = length - eq - 1;
        const char *error = 0;
        if (word_equals(word, eq, "bench")) {
            error = copy_text(value, value_length, job->bench, sizeof job->bench, "bad-bench-id");
        } else if (word_equals(word, eq, "iterations")) {
            error = parse_u64(value, value_length, &job->iterations);
        } else if (word_equals(word, eq, "repetitions")) {
            error = parse_u64(value, value_length, &job->repetitions);
        } else if (word_equals(word, eq, "warmups")) {
            error = parse_u64(value, value_length, &job->warmups);
        } else if (word_equals(word, eq, "size")) {
            error = parse_u64(value, value_length, &job->size_bytes);
        } else if (word_equals(word, eq, "tsc_khz")) {
            error = parse_u64(value, value_length, &job->tsc_khz);
        } else if (word_equals(word, eq, "region_sectors")) {
            error = parse_u64(value, value_length, &job->region_sectors);
        } else if (word_equals(word, eq, "nic")) {
            error = copy_text(value, value_length, job->nic, sizeof job->nic, "bad-device-name");
        } else if (word_equals(word, eq, "disk")) {
            error = copy_text(value, value_length, job->disk, sizeof job->disk, "bad-device-name");
        } else if (word_equals(word, eq, "disk_path")) {
            error = copy_text(value, value_length, job->disk_path, sizeof job->disk_path, "bad-disk-path");
        } else if (word_equals(word, eq, "disk_readonly")) {
            error = parse_flag(value, value_length, &job->disk_readonly, "disk-readonly-not-0-or-1");
        } else if (word_equals(word, eq, "peer")) {
            if (value_length == 4 && word_equals(value, 4, "sink")) job->loopback_peer = 0;
            else if (value_length == 6 && word_equals(value, 6, "source")) job->loopback_peer = 1;
            else if (value_length == 4 && word_equals(value, 4, "echo")) job->loopback_peer = 2;
            else error = "peer-not-sink-source-or-echo";
        } else if (word_equals(word, eq, "disk_verify")) {
            error = parse_flag(value, value_length, &job->disk_verify, "disk-verify-not-0-or-1");
        } else if (word_equals(word, eq, "udp")) {
            error = parse_flag(value, value_length, &job->udp, "udp-not-0-or-1");
        } else if (word_equals(word, eq, "guest_ip")) {
            error = parse_ipv4(value, value_length, &job->guest_ip);
        } else if (word_equals(word, eq, "peer_ip")) {
            error = parse_ipv4(value, value_length, &job->peer_ip);
        } else if (word_equals(word, eq, "peer_mac")) {
            error = parse_mac(value, value_length, job->peer_mac);
        } else if (word_equals(word, eq, "guest_mac")) {
            error = parse_mac(value, value_length, job->guest_mac);
        } else if (word_equals(word, eq, "serve")) {
            if (value_length == 4 && word_equals(value, 4, "echo")) job->serve = 1;
            else if (value_length == 6 && word_equals(value, 6, "source")) job->serve = 2;
            else if (value_length == 4 && word_equals(value, 4, "idle")) job->serve = 3;
            else error = "serve-not-echo-source-or-idle";
        } else if (word_equals(word, eq, "guest_port") || word_equals(word, eq, "peer_port")) {
            uint64_t *port = word[0] == 'g' ? &job->guest_port : &job->peer_port;
            error = parse_u64(value, value_length, port);
            if (!error && (*port == 0 || *port > 65535)) error = "port-out-of-range";
        } else if (word_equals(word, eq, "inject_violation")) {
            error = parse_flag(value, value_length, &job->inject_violation, "inject-violation-not-0-or-1");
        } else if (word_equals(word, eq, "balloon")) {
            error = parse_flag(value, value_length, &job->balloon, "balloon-not-0-or-1");
        } else if (word_equals(word, eq, "slowdown_percent")) {
            error = parse_u64(value, value_length, &job->slowdown_percent);
        }
        /* Other key=value words (console=, ...) belong to other layers. */
        if (error) return error;
    }
    if (!job->bench[0]) return "missing-bench";
    if (job->iterations == 0) return "zero-iterations";
    if (job->repetitions == 0) return "zero-repetitions";
    return 0;
}
