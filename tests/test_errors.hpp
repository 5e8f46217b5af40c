#pragma once
// Error-message checks shared by every test binary: the library's errors are c10::Error whose
// message names the offending values, so tests look for those names in the message.
#include <gtest/gtest.h>

#include <c10/util/Exception.h>

#include <string>

namespace akcb_test {

/// The message of the c10::Error thrown by `f` ("" when nothing is thrown).
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (c10::Error const& e) {
    return e.what_without_backtrace();
  }
  return "";
}

}  // namespace akcb_test

/// Expects `expr` to throw a c10::Error whose message contains `needle`.
#define EXPECT_ERROR_HAS(expr, needle)                                                  \
  do {                                                                                  \
    std::string const akcb_msg_ = ::akcb_test::error_of([&] { (void)(expr); });         \
    EXPECT_FALSE(akcb_msg_.empty()) << "no c10::Error from " #expr " (expected one mentioning " << (needle) << ")"; \
    EXPECT_NE(akcb_msg_.find(needle), std::string::npos) << "message: " << akcb_msg_;   \
  } while (0)
