#pragma once
// For tests of library errors: fn() must throw moe::Error whose message is one line (what mains
// print) and contains `needle` (the value or name it must point at).
#include <gtest/gtest.h>

#include <string>

#include "core/error.hpp"

namespace moe::test {

template <typename Fn>
void expect_one_line_error(Fn&& fn, const std::string& needle) {
  try {
    fn();
    ADD_FAILURE() << "no error; expected one mentioning '" << needle << "'";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(needle), std::string::npos) << what;
    EXPECT_EQ(what.find('\n'), std::string::npos) << what;
  }
}

}  // namespace moe::test
