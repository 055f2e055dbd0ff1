"""The invoice engine, pure: charges → discount → tax → credit → finalize. No I/O."""
