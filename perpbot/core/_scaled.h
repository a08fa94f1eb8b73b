/* perpbot/core/_scaled.h: the number parsing the C extensions share, as static inline functions
 * compiled into each of them (no shared object, no symbol between modules). It is the C twin of
 * perpbot.core.numbers.to_scaled for the plain case only: anything it does not accept, the caller
 * hands to the Python function, which alone raises the errors and handles values of any size.
 *
 * Users: perpbot/book/_levels.c (level prices and sizes), perpbot/venues/okx/_books.c (timestamps).
 * Include <Python.h> first.
 */
#ifndef PERPBOT_CORE_SCALED_H
#define PERPBOT_CORE_SCALED_H

#define SCALE 9
#define SCALED_LIMIT (1LL << 62)
static const long long POW10[SCALE + 1] = {1LL, 10LL, 100LL, 1000LL, 10000LL, 100000LL, 1000000LL, 10000000LL,
                                           100000000LL, 1000000000LL};

/* The index of the one dot of s[0..len) (-1 without), or -2 when s holds anything but ASCII digits
 * and at most one dot, or is "." alone. */
static inline Py_ssize_t
scaled_dot(const char *s, Py_ssize_t len)
{
    Py_ssize_t dot = -1;
    for (Py_ssize_t i = 0; i < len; i++) {
        if (s[i] == '.') {
            if (dot >= 0)
                return -2; /* a second dot */
            dot = i;
        } else if (s[i] < '0' || s[i] > '9') {
            return -2;
        }
    }
    return dot >= 0 && len == 1 ? -2 : dot; /* "." alone: no digits */
}

/* to_scaled in C for the plain case: ASCII digits with at most one dot, at most 9 decimals once
 * trailing zeros past the 9th are dropped, times 10**9, when the result fits in 62 bits. Returns 1
 * and sets *out, or 0 when the text is anything else (a sign, an exponent, too many digits...). */
static inline int
scaled_digits(const char *s, Py_ssize_t len, long long *out)
{
    if (len == 0 || len > 40)
        return 0;
    Py_ssize_t dot = scaled_dot(s, len);
    if (dot == -2)
        return 0;
    Py_ssize_t end = len; /* digits after the dot beyond SCALE must be zeros: drop them */
    if (dot >= 0) {
        while (end - dot - 1 > SCALE && s[end - 1] == '0')
            end--;
        if (end - dot - 1 > SCALE)
            return 0;
    }
    long long value = 0;
    int frac = 0;
    for (Py_ssize_t i = 0; i < end; i++) {
        if (i == dot)
            continue;
        if (value > (SCALED_LIMIT / 10))
            return 0;
        value = value * 10 + (s[i] - '0');
        frac += dot >= 0 && i > dot;
    }
    long long mul = POW10[SCALE - frac];
    if (value > SCALED_LIMIT / mul)
        return 0;
    *out = value * mul;
    return 1;
}

/* A scaled size in venue units as base units: value x contract / 10**9 (contract 0: none). 1 and
 * *out when exact and below SCALED_LIMIT, else 0 (the Python function raises or computes it). */
static inline int
scaled_times_contract(long long value, long long contract, long long *out)
{
    if (contract == 0 || value == 0) {
        *out = value;
        return 1;
    }
    __int128 product = (__int128)value * contract;
    if (product % POW10[SCALE] != 0 || product / POW10[SCALE] >= SCALED_LIMIT)
        return 0;
    *out = (long long)(product / POW10[SCALE]);
    return 1;
}

/* 1 to max_digits ASCII digits (max_digits <= 18: no overflow) as a non-negative integer. 1 or 0. */
static inline int
plain_digits(const char *s, Py_ssize_t len, Py_ssize_t max_digits, long long *out)
{
    if (len < 1 || len > max_digits)
        return 0;
    long long value = 0;
    for (Py_ssize_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        value = value * 10 + (s[i] - '0');
    }
    *out = value;
    return 1;
}

#endif /* PERPBOT_CORE_SCALED_H */
