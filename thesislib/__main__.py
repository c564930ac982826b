from thesislib.cli import main

raise SystemExit(main())
