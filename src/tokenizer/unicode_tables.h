// Declarations of the generated Unicode data in unicode_tables.cpp (data_tools/gen_unicode_tables.py).
// Every table is a flat uint32_t array (with its element count in <name>_size):
//   kCategoryRuns       cp << 8 | category, one per run of equal general category, from U+0000 up
//   kWhiteSpace         the White_Space code points
//   kWordExtraRanges    first, last: \w code points outside L, M, Nd, Nl, Pc (Rust regex \w)
//   kCombiningClass     cp << 8 | ccc for every non-zero canonical combining class (Unicode 9.0 set)
//   kNfcQcNotYesRanges  first, last: NFC_Quick_Check = No or Maybe (Unicode 9.0 set)
//   kDecompIndex        cp, offset << 4 | length into kDecompChars: full canonical decomposition
//   kDecompChars        the decomposed code points
//   kCompose            first, second, composite: primary composites (no Hangul; that is algorithmic)
//   kCaseFold           cp, folded: simple case folding where it maps to one other code point
// Category numbers follow unicode::Category.
#pragma once

#include <cstddef>
#include <cstdint>

namespace hs::tokenizer::unicode_data {

extern const char kUnicodeVersion[];
extern const char kNormalizationVersion[];
extern const uint32_t kCategoryRuns[];
extern const size_t kCategoryRuns_size;
extern const uint32_t kWhiteSpace[];
extern const size_t kWhiteSpace_size;
extern const uint32_t kWordExtraRanges[];
extern const size_t kWordExtraRanges_size;
extern const uint32_t kCombiningClass[];
extern const size_t kCombiningClass_size;
extern const uint32_t kNfcQcNotYesRanges[];
extern const size_t kNfcQcNotYesRanges_size;
extern const uint32_t kDecompIndex[];
extern const size_t kDecompIndex_size;
extern const uint32_t kDecompChars[];
extern const size_t kDecompChars_size;
extern const uint32_t kCompose[];
extern const size_t kCompose_size;
extern const uint32_t kCaseFold[];
extern const size_t kCaseFold_size;

}  // namespace hs::tokenizer::unicode_data
