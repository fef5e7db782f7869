from shared.runtime import run_forever
from services.reporting.app import build

run_forever(build, "reporting")
