"""ApiVersions (18): what the broker speaks, read from the API table so it
cannot lie, and from v3 the features it implements (``features.py``)."""
from kafka.protocol.metadata import ApiVersionsRequest, ApiVersionsResponse

from ..errors import ErrorCode
from .features import FEATURES, finalized, finalized_epoch
from .registry import API_TABLE, RequestContext, api


def supported_versions(version: int, error: ErrorCode = ErrorCode.NONE) -> ApiVersionsResponse:
    Key = ApiVersionsResponse.ApiVersion
    keys = [Key(api_key=a.key, min_version=a.min_version, max_version=a.max_version)
            for a in sorted(API_TABLE.values(), key=lambda a: a.key)]
    Supported = ApiVersionsResponse.SupportedFeatureKey
    Finalized = ApiVersionsResponse.FinalizedFeatureKey
    return ApiVersionsResponse(
        version=version, error_code=error, api_keys=keys, throttle_time_ms=0,
        supported_features=[Supported(name=n, min_version=f.min_version, max_version=f.max_version)
                            for n, f in sorted(FEATURES.items())],
        finalized_features_epoch=finalized_epoch(),
        finalized_features=[Finalized(name=n, max_version_level=level, min_version_level=level)
                            for n, level in sorted(finalized().items())],
        zk_migration_ready=False)


@api(ApiVersionsRequest, ApiVersionsResponse)
async def handle(ctx: RequestContext, request: ApiVersionsRequest) -> ApiVersionsResponse:
    return supported_versions(ctx.version)
