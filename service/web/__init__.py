"""`strata web`: a browser app that is only a gRPC client of Strata (Starlette on uvicorn).

from service.web.app import create_app
from service.web.config import WebSettings
app = create_app(WebSettings(server="127.0.0.1:50051"))
"""
