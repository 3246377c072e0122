// SPDX-License-Identifier: GPL-2.0
/*
 * Debug kernel self-test (tests/vm/debug-selftest): loading this module with
 * kind=NAME commits one bug that a checker of the debug kernel must report,
 * then refuses to load. Only for the debug kernel's VM.
 *
 *   kasan    a read after kfree                     KASAN
 *   lockdep  two mutexes taken in both orders       PROVE_LOCKING
 *   sleep    might_sleep() under a spinlock         DEBUG_ATOMIC_SLEEP
 *   leak     a kmalloc'd buffer nothing points to   DEBUG_KMEMLEAK
 *   work     kfree of a pending delayed work        DEBUG_OBJECTS_WORK/TIMERS
 *   list     list_del of an entry twice             DEBUG_LIST
 */
#include <linux/delay.h>
#include <linux/list.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include <linux/string.h>
#include <linux/workqueue.h>

static char *kind = "";
module_param(kind, charp, 0444);
MODULE_PARM_DESC(kind, "kasan, lockdep, sleep, leak, work or list");

static DEFINE_MUTEX(splat_a);
static DEFINE_MUTEX(splat_b);
static DEFINE_SPINLOCK(splat_lock);
static void *splat_sink;

static void splat_work_fn(struct work_struct *w)
{
}

static noinline void splat_kasan(void)
{
	char *p = kmalloc(64, GFP_KERNEL);

	if (!p)
		return;
	kfree(p);
	splat_sink = (void *)(unsigned long)READ_ONCE(p[8]);
}

static noinline void splat_lockdep(void)
{
	mutex_lock(&splat_a);
	mutex_lock(&splat_b);
	mutex_unlock(&splat_b);
	mutex_unlock(&splat_a);

	mutex_lock(&splat_b);
	mutex_lock(&splat_a);
	mutex_unlock(&splat_a);
	mutex_unlock(&splat_b);
}

static noinline void splat_sleep(void)
{
	spin_lock(&splat_lock);
	might_sleep();
	spin_unlock(&splat_lock);
}

static noinline void splat_leak(void)
{
	void *p = kmalloc(1024, GFP_KERNEL);

	if (p)
		memset(p, 0x5a, 1024);
	/* p is lost: nothing refers to the buffer any more. */
}

static noinline void splat_work(void)
{
	struct delayed_work *dw = kmalloc(sizeof(*dw), GFP_KERNEL);

	if (!dw)
		return;
	INIT_DELAYED_WORK(dw, splat_work_fn);
	schedule_delayed_work(dw, 3600 * HZ);
	kfree(dw);
}

static noinline void splat_list(void)
{
	LIST_HEAD(head);
	struct list_head *e = kmalloc(sizeof(*e), GFP_KERNEL);

	if (!e)
		return;
	list_add(e, &head);
	list_del(e);
	list_del(e);
	kfree(e);
}

static int __init debug_splat_init(void)
{
	if (!strcmp(kind, "kasan"))
		splat_kasan();
	else if (!strcmp(kind, "lockdep"))
		splat_lockdep();
	else if (!strcmp(kind, "sleep"))
		splat_sleep();
	else if (!strcmp(kind, "leak"))
		splat_leak();
	else if (!strcmp(kind, "work"))
		splat_work();
	else if (!strcmp(kind, "list"))
		splat_list();
	else
		return -EINVAL;
	return -ECANCELED;
}
module_init(debug_splat_init);

MODULE_DESCRIPTION("dm-fleece debug kernel self-test");
MODULE_LICENSE("GPL");
