from shared.runtime import run_forever
from services.roster.app import build

run_forever(build, "roster")
