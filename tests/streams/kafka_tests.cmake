# tests/streams, the Kafka feed of streams/ (included by CMakeLists.txt here):
# unit tests of the watermark and the committer, and the tests of the feed
# against a real Kafka broker (tests/kafka/broker.sh through
# tests/support/ukko_kafka.h), which print SKIPPED where none can run.
foreach(n test_watermark test_committer test_config)
  ukko_unit_test(streams_${n} ${CMAKE_CURRENT_SOURCE_DIR}/${n}.c ukko_streams)
  target_include_directories(streams_${n} PRIVATE ${PROJECT_SOURCE_DIR}/streams)
endforeach()

# The feed in the test's process over a stand-in sharding (fake_sharding.c
# drives the shard hooks as cluster/ would), with kcat and the handler the
# tests share (feed_support.c).
add_library(streams_feed_support STATIC ${CMAKE_CURRENT_SOURCE_DIR}/fake_sharding.c
            ${CMAKE_CURRENT_SOURCE_DIR}/feed_support.c)
ukko_warnings(streams_feed_support)
target_include_directories(streams_feed_support PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}
                           ${PROJECT_SOURCE_DIR}/streams)
target_link_libraries(streams_feed_support PUBLIC ukko_test_support ukko_streams
                      PkgConfig::CRITERION)

if(TARGET ukko_kafka_rig)
  ukko_criterion_test(streams_test_feed_kafka integration
                      ${CMAKE_CURRENT_SOURCE_DIR}/test_feed_kafka.c streams_feed_support
                      ukko_kafka_rig)
  set_tests_properties(streams_test_feed_kafka PROPERTIES TIMEOUT 900 LABELS "kafka;integration"
                       SKIP_REGULAR_EXPRESSION "SKIPPED:")
  # Real `ukko run --app orders` nodes on 127.0.6.2-6 over the real sharding.
  ukko_criterion_test(streams_test_multi_kafka integration
                      ${CMAKE_CURRENT_SOURCE_DIR}/test_multi_kafka.c streams_feed_support
                      ukko_kafka_rig)
  add_dependencies(streams_test_multi_kafka ukko)
  set_tests_properties(streams_test_multi_kafka PROPERTIES TIMEOUT 1800
                       LABELS "kafka;integration" SKIP_REGULAR_EXPRESSION "SKIPPED:")
  # The feed while its broker is paused, then killed and restarted.
  ukko_criterion_test(streams_test_feed_broker_faults integration
                      ${CMAKE_CURRENT_SOURCE_DIR}/test_feed_broker_faults.c streams_feed_support
                      ukko_kafka_rig)
  set_tests_properties(streams_test_feed_broker_faults PROPERTIES TIMEOUT 900
                       LABELS "kafka;integration" SKIP_REGULAR_EXPRESSION "SKIPPED:")
  # examples/clicks as a user's shared library, run by `ukko run --app lib.so`.
  ukko_criterion_test(streams_test_example_app integration
                      ${CMAKE_CURRENT_SOURCE_DIR}/test_example_app.c streams_feed_support
                      ukko_kafka_rig)
  add_dependencies(streams_test_example_app ukko ukko_example_clicks)
  set_tests_properties(streams_test_example_app PROPERTIES TIMEOUT 600
                       LABELS "kafka;integration" SKIP_REGULAR_EXPRESSION "SKIPPED:")
endif()

# The feed while `ukko dev-kafka` fails requests on cue (devkafka_fixture.c).
ukko_criterion_test(streams_test_feed_faults integration
                    ${CMAKE_CURRENT_SOURCE_DIR}/test_feed_faults.c streams_feed_support
                    streams_test_support)
add_dependencies(streams_test_feed_faults ukko)
set_tests_properties(streams_test_feed_faults PROPERTIES TIMEOUT 600
                     SKIP_REGULAR_EXPRESSION "SKIPPED:")

# Kafka-fed shards across a real network cut (network namespaces, root only):
# the downed side stops before the other takes its partitions, nothing lost.
add_test(NAME streams_netns_kafka
         COMMAND python3 ${CMAKE_CURRENT_SOURCE_DIR}/netns_kafka.py $<TARGET_FILE:ukko>)
set_tests_properties(streams_netns_kafka PROPERTIES TIMEOUT 600 LABELS "kafka;integration"
                     SKIP_REGULAR_EXPRESSION "SKIPPED:")
