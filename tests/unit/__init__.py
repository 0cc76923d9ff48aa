"""The unit tier: pure logic, no manager, no compiled core, no hugepages, no root."""
