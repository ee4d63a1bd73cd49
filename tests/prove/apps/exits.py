"""An app that calls sys.exit() at import (a CLI parsing its arguments, say)."""

import sys

sys.exit("usage: app --config FILE")
