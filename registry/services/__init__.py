"""Services: the farm's operations. Routes and tasks parse input, call one of these, return a schema."""
