from shared.runtime import run_forever
from services.documents.app import build

run_forever(build, "documents")
