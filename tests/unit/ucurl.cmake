# ucurl.cmake -- test_ucurl, the unit test of core/ucurl.c: real https
# calls on a real loop against a TLS HTTP/1.1 server thread inside the test
# (OpenSSL, self-signed certificate made at start). ucurl.c needs only the
# loop and the ucall struct, so uclient.c and origin.c are not linked.
# Included from tests/unit/CMakeLists.txt.
pkg_check_modules(TEST_UCURL_SSL REQUIRED IMPORTED_TARGET openssl)
kapi_unit_test(test_ucurl SOURCES ${C}/ucurl.c ${C}/loop.c
  LIBRARIES PkgConfig::CURL PkgConfig::TEST_UCURL_SSL Threads::Threads)
