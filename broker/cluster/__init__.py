"""Cluster metadata and ownership: topics, partition owners and epochs,
producer-id blocks, membership and the controller lease, all in the bucket.

    Cluster           this broker's view, and the one way to change topics
    MetadataStore     the bucket's metadata document and its cache
    OwnershipDelta    what this broker gained and lost (applied by the ReplicaManager)
"""
from .cluster import Cluster, TopicExists, UnknownTopic
from .membership import BrokerRegistration, Membership
from .metadata import NO_OWNER, ClusterImage, MetadataStore, Topic, topic_name_error
from .ownership import HandOff, OwnershipDelta, PartitionGain, PartitionLoss, ownership_delta

__all__ = ["Cluster", "TopicExists", "UnknownTopic", "BrokerRegistration", "Membership",
           "NO_OWNER", "ClusterImage", "MetadataStore", "Topic", "topic_name_error",
           "HandOff", "OwnershipDelta", "PartitionGain", "PartitionLoss", "ownership_delta"]
