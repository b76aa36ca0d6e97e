"""UpdateFeatures (57): ``kafka-features upgrade/downgrade/disable``.

Sluice's feature levels are fixed by what it implements (``features.py``),
so every update is validated exactly as Kafka's controller validates it
(``FeatureControlManager.updateFeature``: upgrade type, negative level,
unknown feature or level, downgrade without a downgrade type, a "downgrade"
to a higher level) with Kafka's INVALID_UPDATE_VERSION messages; what passes
is answered as Kafka answers, but only a ``validate_only`` request or one
that changes nothing succeeds: a real change fails with the reason.
"""
from __future__ import annotations

from kafka.protocol.admin import UpdateFeaturesRequest, UpdateFeaturesResponse

from ..errors import ErrorCode
from .features import FEATURES, finalized
from .registry import RequestContext, api

UPGRADE, SAFE_DOWNGRADE, UNSAFE_DOWNGRADE = 1, 2, 3
Result = UpdateFeaturesResponse.UpdatableFeatureResult


def check_update(feature: str, level: int, upgrade_type: int, node_id: int) -> str | None:
    """Why Kafka's controller would refuse this update (None: it would apply it)."""
    def invalid(reason: str) -> str:
        return f"Invalid update version {level} for feature {feature}. {reason}"
    if upgrade_type not in (UPGRADE, SAFE_DOWNGRADE, UNSAFE_DOWNGRADE):
        return invalid("The controller does not support the given upgrade type.")
    if level < 0:
        return invalid("A feature version cannot be less than 0.")
    current = finalized().get(feature, 0)
    if level == 0:
        if feature not in finalized():
            return invalid(f"Feature {feature} not found.")
    else:
        f = FEATURES.get(feature)
        if f is None:
            return invalid(f"Local controller {node_id} does not support this feature.")
        if not f.min_version <= level <= f.max_version:
            return invalid(f"Local controller {node_id} only supports versions {f.min_version}-{f.max_version}")
    if level < current and upgrade_type == UPGRADE:
        return invalid("Can't downgrade the version of this feature without setting the upgrade type "
                       "to either safe or unsafe downgrade.")
    if level > current and upgrade_type != UPGRADE:
        return invalid("Can't downgrade to a newer version.")
    return None


@api(UpdateFeaturesRequest, UpdateFeaturesResponse)
async def handle(ctx: RequestContext, request: UpdateFeaturesRequest) -> UpdateFeaturesResponse:
    v = ctx.version
    node_id = ctx.broker.node_id
    validate_only = v >= 1 and request.validate_only
    reason = None
    for u in request.feature_updates:
        upgrade_type = u.upgrade_type if v >= 1 else (SAFE_DOWNGRADE if u.allow_downgrade else UPGRADE)
        reason = check_update(u.feature, u.max_version_level, upgrade_type, node_id)
        if reason is None and not validate_only and u.max_version_level != finalized().get(u.feature, 0):
            reason = (f"Invalid update version {u.max_version_level} for feature {u.feature}. Sluice's "
                      f"feature levels are those it implements and cannot be changed.")
        if reason is not None:
            return UpdateFeaturesResponse(
                version=v, throttle_time_ms=0, error_code=ErrorCode.INVALID_UPDATE_VERSION,
                error_message="The update failed for all features since the following feature had an "
                              f"error: {reason}", results=[])
    # Kafka answers each feature's success with the message "NONE" (v0-1)
    results = [Result(feature=u.feature, error_code=0, error_message="NONE") for u in request.feature_updates]
    return UpdateFeaturesResponse(version=v, throttle_time_ms=0, error_code=0, error_message=None,
                                  results=results if v < 2 else [])
