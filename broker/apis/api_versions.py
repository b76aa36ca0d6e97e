"""ApiVersions (18): what the broker speaks, read from the API table so it cannot lie."""
from kafka.protocol.metadata import ApiVersionsRequest, ApiVersionsResponse

from ..errors import ErrorCode
from .registry import API_TABLE, RequestContext, api


def supported_versions(version: int, error: ErrorCode = ErrorCode.NONE) -> ApiVersionsResponse:
    Key = ApiVersionsResponse.ApiVersion
    keys = [Key(api_key=a.key, min_version=a.min_version, max_version=a.max_version)
            for a in sorted(API_TABLE.values(), key=lambda a: a.key)]
    return ApiVersionsResponse(version=version, error_code=error, api_keys=keys,
                               throttle_time_ms=0)


@api(ApiVersionsRequest, ApiVersionsResponse)
async def handle(ctx: RequestContext, request: ApiVersionsRequest) -> ApiVersionsResponse:
    return supported_versions(ctx.version)
