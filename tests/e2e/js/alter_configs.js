// kafkajs's admin.alterConfigs (Kafka's non-incremental AlterConfigs, API 33)
// then describeConfigs, against one broker; prints one JSON line per step.
// Usage: node alter_configs.js BOOTSTRAP TOPIC BROKER_ID
const { Kafka, ConfigResourceTypes, logLevel } = require("kafkajs");

const [bootstrap, topic, brokerId] = process.argv.slice(2);
const kafka = new Kafka({ clientId: "sluice-kafkajs-test", brokers: [bootstrap], logLevel: logLevel.NOTHING,
                          retry: { retries: 2 } });
const admin = kafka.admin();

async function describe(type, name, configNames) {
  const res = await admin.describeConfigs({ includeSynonyms: false, resources: [{ type, name, configNames }] });
  const r = res.resources[0];
  return { errorCode: r.errorCode, configs: Object.fromEntries(
    r.configEntries.map((c) => [c.configName, { value: c.configValue, isDefault: c.isDefault }])) };
}

async function step(label, fn) {
  try {
    const out = await fn();
    console.log(JSON.stringify({ step: label, ok: true, out }));
  } catch (e) {
    console.log(JSON.stringify({ step: label, ok: false, type: e.type || e.name, message: e.message }));
  }
}

(async () => {
  await admin.connect();
  const T = ConfigResourceTypes.TOPIC, B = ConfigResourceTypes.BROKER;
  const keys = ["retention.ms", "max.message.bytes"];
  await step("set both", () => admin.alterConfigs({ validateOnly: false, resources: [{ type: T, name: topic,
    configEntries: [{ name: "retention.ms", value: "3600000" }, { name: "max.message.bytes", value: "2000" }] }] }));
  await step("described", () => describe(T, topic, keys));
  await step("set one: the other goes", () => admin.alterConfigs({ validateOnly: false, resources: [{ type: T,
    name: topic, configEntries: [{ name: "retention.ms", value: "7200000" }] }] }));
  await step("described again", () => describe(T, topic, keys));
  await step("validate only", () => admin.alterConfigs({ validateOnly: true, resources: [{ type: T, name: topic,
    configEntries: [{ name: "max.message.bytes", value: "3000" }] }] }));
  await step("unchanged", () => describe(T, topic, keys));
  await step("bad value", () => admin.alterConfigs({ validateOnly: false, resources: [{ type: T, name: topic,
    configEntries: [{ name: "retention.ms", value: "soon" }] }] }));
  await step("unknown topic", () => admin.alterConfigs({ validateOnly: false, resources: [{ type: T,
    name: topic + "-nope", configEntries: [{ name: "retention.ms", value: "1" }] }] }));
  await step("broker", () => admin.alterConfigs({ validateOnly: false, resources: [{ type: B, name: brokerId,
    configEntries: [{ name: "log.retention.ms", value: "86400000" }] }] }));
  await step("broker described", () => describe(B, brokerId, ["log.retention.ms"]));
  await step("broker emptied", () => admin.alterConfigs({ validateOnly: false, resources: [{ type: B,
    name: brokerId, configEntries: [] }] }));
  await step("broker described again", () => describe(B, brokerId, ["log.retention.ms"]));
  await admin.disconnect();
})().catch((e) => { console.error(e); process.exit(1); });
