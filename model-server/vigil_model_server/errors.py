"""The one error type request handling raises: an HTTP status and a message a person can act on."""


class ApiError(Exception):
    """A request the server refuses; becomes `{"error": message}` with `status`."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


def malformed(message: str) -> ApiError:
    """The body is not the JSON document the endpoint reads (400)."""
    return ApiError(400, message)


def not_found(message: str) -> ApiError:
    """Unknown model, version or prediction id (404)."""
    return ApiError(404, message)


def invalid(message: str) -> ApiError:
    """Well-formed JSON whose values the model cannot take: shape, dtype, NaN (422)."""
    return ApiError(422, message)


def too_large(message: str) -> ApiError:
    """More bytes or rows than the server takes in one request (413)."""
    return ApiError(413, message)
