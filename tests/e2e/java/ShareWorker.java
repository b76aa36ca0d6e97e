// A KafkaShareConsumer for tests/e2e/test_share_groups.py, run with Java's
// single-file launcher against the kafka-clients jar:
//   java -cp 'libs/*' ShareWorker.java BOOTSTRAP GROUP TOPIC MODE STOPFILE [DELAY_MS]
// MODE "accept": poll, print "REC offset deliveryCount" per record, accept each,
// commitSync, print "ACK offset deliveryCount" per record accepted, until
// STOPFILE exists. MODE "hold": poll until records come, print them, then
// hold them unacknowledged (the test kills this process).
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Properties;

import org.apache.kafka.clients.consumer.AcknowledgeType;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaShareConsumer;
import org.apache.kafka.common.KafkaException;
import org.apache.kafka.common.TopicIdPartition;
import org.apache.kafka.common.serialization.StringDeserializer;

public class ShareWorker {
    public static void main(String[] args) throws Exception {
        String bootstrap = args[0], group = args[1], topic = args[2], mode = args[3];
        Path stop = Path.of(args[4]);
        long delayMs = args.length > 5 ? Long.parseLong(args[5]) : 0;
        Properties props = new Properties();
        props.put("bootstrap.servers", bootstrap);
        props.put("group.id", group);
        props.put("key.deserializer", StringDeserializer.class.getName());
        props.put("value.deserializer", StringDeserializer.class.getName());
        props.put("share.acknowledgement.mode", "explicit");
        props.put("max.poll.records", "5");
        try (KafkaShareConsumer<String, String> consumer = new KafkaShareConsumer<>(props)) {
            consumer.subscribe(List.of(topic));
            System.out.println("STARTED");
            System.out.flush();
            long deadline = System.currentTimeMillis() + 120_000;
            while (!Files.exists(stop) && System.currentTimeMillis() < deadline) {
                ConsumerRecords<String, String> records = consumer.poll(Duration.ofMillis(500));
                List<ConsumerRecord<String, String>> got = new ArrayList<>();
                for (ConsumerRecord<String, String> r : records) {
                    got.add(r);
                    System.out.println("REC " + r.offset() + " " + r.deliveryCount().orElse((short) -1));
                }
                System.out.flush();
                if (got.isEmpty()) {
                    continue;
                }
                if (mode.equals("hold")) {
                    System.out.println("HOLDING");
                    System.out.flush();
                    Thread.sleep(120_000);
                    return;
                }
                for (ConsumerRecord<String, String> r : got) {
                    if (delayMs > 0) {
                        Thread.sleep(delayMs);
                    }
                    consumer.acknowledge(r, AcknowledgeType.ACCEPT);
                }
                Map<TopicIdPartition, Optional<KafkaException>> result = consumer.commitSync();
                boolean ok = result.values().stream().allMatch(Optional::isEmpty);
                for (ConsumerRecord<String, String> r : got) {
                    System.out.println((ok ? "ACK " : "ACKFAIL ") + r.offset() + " "
                        + r.deliveryCount().orElse((short) -1));
                }
                if (!ok) {
                    System.out.println("ERRORS " + result);
                }
                System.out.flush();
            }
        }
        System.out.println("CLOSED");
    }
}
