import sys

from backend.data.annotate.run import main

sys.exit(main())
