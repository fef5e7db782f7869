from shared.runtime import run_forever
from services.notify.app import build

run_forever(build, "notify")
