# tests/streams, the Kafka feed of streams/ (included by CMakeLists.txt here):
# unit tests of the watermark and the committer, and the tests of the feed
# against a real Kafka broker (tests/kafka/broker.sh through
# tests/support/ukko_kafka.h), which print SKIPPED where none can run.
foreach(n test_watermark test_committer)
  ukko_unit_test(streams_${n} ${CMAKE_CURRENT_SOURCE_DIR}/${n}.c ukko_streams)
  target_include_directories(streams_${n} PRIVATE ${PROJECT_SOURCE_DIR}/streams)
endforeach()
