"""The CPU model zoo: run recipes end to end, aggregate seeds, render the report and model card."""
