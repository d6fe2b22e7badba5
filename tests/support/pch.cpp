// The translation unit the tests' precompiled header is made with (tests/CMakeLists.txt).
