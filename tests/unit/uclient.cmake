# uclient.cmake -- unit tests for core/uclient.c and core/origin.c against a
# real HTTP/1.1 test server (a thread in the test); included from
# tests/unit/CMakeLists.txt, which defines kapi_unit_test and ${C}.
kapi_unit_test(test_uclient SOURCES tserver.c tloop.c ${C}/uclient.c ${C}/origin.c ${C}/http1.c
  ${C}/ucurl.c ${C}/loop.c
  LIBRARIES http_parser PkgConfig::CURL Threads::Threads)
# The test counts the client's epoll_ctl calls.
target_link_options(test_uclient PRIVATE -Wl,--wrap=epoll_ctl)
