// Package pathesc turns mount paths (which may hold any byte but '/' and
// NUL) and other untrusted text into strings that are safe to show and
// still tell every path apart.
//
// One escaping is used everywhere, with two strengths:
//
//   - Escape, for identity (metric labels, JSON keys and values, span
//     attributes): each byte that is not part of valid UTF-8 becomes \xNN
//     (two lower-case hex digits) and a backslash becomes \\. Everything
//     else is kept, so a valid UTF-8 path without a backslash is unchanged.
//   - Display, for people (the check subcommand, logs, the status page):
//     Escape, and in addition every rune that unicode.IsPrint rejects
//     (C0 and C1 controls, ESC, DEL, U+2028/U+2029, the bidi embeddings,
//     overrides, isolates and marks, zero-width and other format
//     characters, non-ASCII spaces) becomes \xNN below U+0080, \uNNNN in
//     the rest of the BMP and \UNNNNNNNN above, as in Go string literals.
//     The result holds no control character and cannot move the cursor
//     or reorder text on a terminal or in a browser.
//
// Both are injective and Unescape inverts both: \xNN stands for the byte
// NN, \uNNNN and \UNNNNNNNN for the UTF-8 encoding of the rune, \\ for a
// backslash, and since every literal backslash is doubled, no original
// text can be mistaken for an escape. Distinct inputs therefore always
// give distinct outputs.
package pathesc
