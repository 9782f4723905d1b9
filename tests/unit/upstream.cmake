# upstream.cmake -- unit tests of the upstream layer above the client:
# proxy.c's helpers, upstream.c (target choice, outcomes fed back),
# exchange.c (tries, retries, deadlines, error mapping) and hcheck.c (active
# health checks), the last two against test servers running in threads of
# the test on 127.0.0.1. Included from tests/unit/CMakeLists.txt, which
# defines kapi_unit_test, ${C} and KAPI_UPSTREAM_SOURCES.

# A group: its targets' origins, breakers, health and balancer.
set(KAPI_GROUP_SOURCES ${C}/upstream.c ${C}/origin.c ${C}/balance.c ${C}/breaker.c
  ${C}/health.c ${C}/log.c)
# What sends: the loop's client, plain and https.
set(KAPI_CLIENT_SOURCES ${C}/uclient.c ${C}/ucurl.c ${C}/http1.c ${C}/loop.c)

# proxy.c pulls in the exchange and the request it builds from.
kapi_unit_test(test_proxy SOURCES ${KAPI_UPSTREAM_SOURCES} ${C}/request.c ${C}/arena.c
  ${C}/problem.c ${C}/jsonw.c ${C}/log.c
  LIBRARIES PkgConfig::CURL PkgConfig::JANSSON http_parser m Threads::Threads)
kapi_unit_test(test_upstream SOURCES tserver.c tcapture.c ${KAPI_GROUP_SOURCES} LIBRARIES m Threads::Threads)
kapi_unit_test(test_exchange SOURCES tserver.c tloop.c ${C}/exchange.c ${KAPI_GROUP_SOURCES}
  ${KAPI_CLIENT_SOURCES}
  LIBRARIES PkgConfig::CURL http_parser m Threads::Threads)
kapi_unit_test(test_hcheck SOURCES tserver.c tloop.c tcapture.c ${C}/hcheck.c ${KAPI_GROUP_SOURCES}
  ${KAPI_CLIENT_SOURCES}
  LIBRARIES PkgConfig::CURL http_parser m Threads::Threads)
