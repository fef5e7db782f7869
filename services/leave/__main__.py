from shared.runtime import run_forever
from services.leave.app import build

run_forever(build, "leave")
