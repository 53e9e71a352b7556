// Test helpers shared by every C++ test: where the shared reference data is (../shared/data or
// $HSLOTH_TESTDATA) and a macro that skips a test, saying why, when it is absent.
#pragma once

#include <gtest/gtest.h>

#include <string>

namespace hs::test {

// The shared data folder, or "" when absent.
std::string testdata_dir();
// A fresh empty temporary folder, removed by the caller (or left for inspection on failure).
std::string temp_dir(const std::string& prefix);
// Path of the built hsloth binary ($HSLOTH_BIN), or "" when unknown.
std::string hsloth_bin();

}  // namespace hs::test

#define HS_REQUIRE_TESTDATA()                                                                         \
  do {                                                                                                \
    if (::hs::test::testdata_dir().empty())                                                           \
      GTEST_SKIP() << "shared test data not found (../shared/data or $HSLOTH_TESTDATA); skipping"; \
  } while (0)
